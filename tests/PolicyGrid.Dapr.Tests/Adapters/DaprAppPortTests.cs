using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.Extensions.Configuration;
using PolicyGrid.Api.Auth;
using Shouldly;

namespace PolicyGrid.Dapr.Tests.Adapters;

public sealed class DaprAppPortTests
{
    private const string AppToken = "0123456789abcdef0123456789abcdef";

    private static string ListenUrl(string appId, params (string Key, string? Value)[] settings)
    {
        var builder = WebApplication.CreateBuilder();
        var config = new ConfigurationBuilder().AddInMemoryCollection(settings.Select(s => KeyValuePair.Create(s.Key, s.Value))).Build();

        builder.WebHost.UseDaprAppPort(config, appId);

        return builder.WebHost.GetSetting(WebHostDefaults.ServerUrlsKey)!;
    }

    private static DaprAppRefusedException Refused(string appId, params (string Key, string? Value)[] settings) =>
        Should.Throw<DaprAppRefusedException>(() => ListenUrl(appId, settings));

    [Theory]
    [InlineData(null, DaprNames.Apps.Registry, "http://127.0.0.1:5100")]
    [InlineData(null, DaprNames.Apps.Executor, "http://127.0.0.1:5101")]
    [InlineData(null, DaprNames.Apps.Functions, "http://127.0.0.1:5102")]
    [InlineData(null, DaprNames.Apps.Graphs, "http://127.0.0.1:5103")]
    [InlineData("6123", DaprNames.Apps.Registry, "http://127.0.0.1:6123")]
    [InlineData("not-a-port", DaprNames.Apps.Graphs, "http://127.0.0.1:5103")]
    public void Apps_listen_on_loopback_at_app_port_or_their_own_default(string? appPort, string appId, string expected) =>
        ListenUrl(appId, ("APP_PORT", appPort)).ShouldBe(expected);

    [Theory]
    [InlineData("0.0.0.0", "http://0.0.0.0:5101")]
    [InlineData("::", "http://[::]:5101")]
    [InlineData("[::]", "http://[::]:5101")]
    [InlineData("10.1.2.3", "http://10.1.2.3:5101")]
    [InlineData("::1", "http://[::1]:5101")]
    [InlineData("localhost", "http://localhost:5101")]
    [InlineData("", "http://127.0.0.1:5101")]
    public void The_bind_address_setting_chooses_where_an_app_listens(string address, string expected) =>
        ListenUrl(DaprNames.Apps.Executor, (DaprAppPort.BindAddressKey, address), ("APP_API_TOKEN", AppToken)).ShouldBe(expected);

    [Theory]
    [InlineData("example.com")]
    [InlineData("*")]
    [InlineData("1")]
    [InlineData("0.0.0.0:5101")]
    [InlineData("[127.0.0.1]")]
    [InlineData("[::1]:80")]
    [InlineData(" 0.0.0.0")]
    public void A_bind_address_that_is_not_an_ip_address_or_localhost_is_refused_naming_the_setting_and_the_value(string address)
    {
        var e = Refused(DaprNames.Apps.Executor, (DaprAppPort.BindAddressKey, address), ("APP_API_TOKEN", AppToken));

        e.Message.ShouldContain("PolicyGrid:Dapr:BindAddress");
        e.Message.ShouldContain($"'{address}'");
    }

    [Theory]
    [InlineData("0.0.0.0")]
    [InlineData("::")]
    [InlineData("192.168.1.20")]
    public void An_exposed_registry_without_api_tokens_is_refused_saying_what_to_configure(string address)
    {
        // The app API token does not protect the registry: users call its public API directly.
        var e = Refused(DaprNames.Apps.Registry, (DaprAppPort.BindAddressKey, address), ("APP_API_TOKEN", AppToken));

        e.Message.ShouldContain("policy-registry");
        e.Message.ShouldContain(address);
        e.Message.ShouldContain("PolicyGrid:Auth:Tokens");
        e.Message.ShouldContain("PolicyGrid:Dapr:Insecure=true");
    }

    [Fact]
    public void An_exposed_registry_starts_with_api_tokens_or_when_told_it_is_insecure_on_purpose()
    {
        ListenUrl(DaprNames.Apps.Registry, (DaprAppPort.BindAddressKey, "0.0.0.0"),
                ("PolicyGrid:Auth:Tokens:0:Name", "operator"), ("PolicyGrid:Auth:Tokens:0:Token", AppToken))
            .ShouldBe("http://0.0.0.0:5100");
        ListenUrl(DaprNames.Apps.Registry, (DaprAppPort.BindAddressKey, "0.0.0.0"), (DaprAppPort.InsecureKey, "true"))
            .ShouldBe("http://0.0.0.0:5100");
    }

    [Theory]
    [InlineData(DaprNames.Apps.Functions)]
    [InlineData(DaprNames.Apps.Graphs)]
    public void An_exposed_app_that_only_its_sidecar_calls_needs_the_app_api_token(string appId)
    {
        // API tokens are for users; the sidecar sends the app API token.
        var e = Refused(appId, (DaprAppPort.BindAddressKey, "0.0.0.0"), ("PolicyGrid:Auth:Tokens:0:Token", AppToken));

        e.Message.ShouldContain(appId);
        e.Message.ShouldContain("0.0.0.0");
        e.Message.ShouldContain("APP_API_TOKEN");
        e.Message.ShouldContain("dapr.io/app-token-secret");
        e.Message.ShouldContain("PolicyGrid:Dapr:Insecure=true");

        ListenUrl(appId, (DaprAppPort.BindAddressKey, "0.0.0.0"), ("APP_API_TOKEN", AppToken)).ShouldStartWith("http://0.0.0.0:");
        ListenUrl(appId, (DaprAppPort.BindAddressKey, "0.0.0.0"), (DaprAppPort.InsecureKey, "true")).ShouldStartWith("http://0.0.0.0:");
    }

    [Fact]
    public void An_exposed_executor_starts_with_the_app_api_token_or_api_tokens_or_when_told_it_is_insecure_on_purpose()
    {
        // A create-infra node: the registry calls it directly with its node token, which the node checks as an API token.
        ListenUrl(DaprNames.Apps.Executor, (DaprAppPort.BindAddressKey, "0.0.0.0"),
                ("PolicyGrid:Auth:Tokens:0:Name", "registry"), ("PolicyGrid:Auth:Tokens:0:Token", AppToken))
            .ShouldBe("http://0.0.0.0:5101");
        ListenUrl(DaprNames.Apps.Executor, (DaprAppPort.BindAddressKey, "0.0.0.0"), ("APP_API_TOKEN", AppToken)).ShouldBe("http://0.0.0.0:5101");
        ListenUrl(DaprNames.Apps.Executor, (DaprAppPort.BindAddressKey, "0.0.0.0"), (DaprAppPort.InsecureKey, "true")).ShouldBe("http://0.0.0.0:5101");
    }

    [Theory]
    [InlineData("0.0.0.0")]
    [InlineData("::")]
    public void An_exposed_executor_with_neither_token_is_refused_naming_both(string address)
    {
        var e = Refused(DaprNames.Apps.Executor, (DaprAppPort.BindAddressKey, address));

        e.Message.ShouldContain("policy-executor");
        e.Message.ShouldContain(address);
        e.Message.ShouldContain("APP_API_TOKEN");
        e.Message.ShouldContain("PolicyGrid:Auth:Tokens");
        e.Message.ShouldContain("PolicyGrid:Dapr:Insecure=true");
    }

    [Theory]
    [InlineData("127.0.0.1")]
    [InlineData("127.0.0.2")]
    [InlineData("::1")]
    [InlineData("localhost")]
    public void Loopback_needs_no_credentials(string address)
    {
        foreach (var appId in DaprNames.Apps.All)
            ListenUrl(appId, (DaprAppPort.BindAddressKey, address)).ShouldNotBeNullOrEmpty();
    }

    [Fact]
    public void The_registry_looks_for_api_tokens_where_the_api_reads_them() =>
        DaprAppPort.ApiTokensKey.ShouldBe($"{ApiAuthOptions.Section}:Tokens");
    [Theory]
    [InlineData("http://0.0.0.0:5100")]
    [InlineData("http://*:5100")]
    [InlineData("http://+:5100")]
    [InlineData("https://[::]:5443")]
    [InlineData("http://10.1.2.3:5100")]
    [InlineData("http://example.com:5100")]
    [InlineData("not a url")]
    public void A_kestrel_endpoint_off_loopback_is_held_to_the_same_rule_as_the_bind_address(string url)
    {
        // Kestrel's configured endpoints replace the URL the app sets: on their own they opened the app to the network.
        var e = Refused(DaprNames.Apps.Registry, ("Kestrel:Endpoints:Public:Url", url));

        e.Message.ShouldContain("Kestrel:Endpoints:Public:Url");
        e.Message.ShouldContain(url);
        e.Message.ShouldContain("PolicyGrid:Auth:Tokens");
        ListenUrl(DaprNames.Apps.Registry, ("Kestrel:Endpoints:Public:Url", url), ("PolicyGrid:Auth:Tokens:0:Name", "ops"), ("PolicyGrid:Auth:Tokens:0:Token", AppToken)).ShouldNotBeNullOrEmpty();
        ListenUrl(DaprNames.Apps.Registry, ("Kestrel:Endpoints:Public:Url", url), ("PolicyGrid:Dapr:Insecure", "true")).ShouldNotBeNullOrEmpty();
    }

    [Theory]
    [InlineData("http://127.0.0.1:5100")]
    [InlineData("http://localhost:5100")]
    [InlineData("https://[::1]:5443/")]
    public void A_kestrel_endpoint_on_loopback_needs_no_credentials(string url) =>
        ListenUrl(DaprNames.Apps.Functions, ("Kestrel:Endpoints:Local:Url", url)).ShouldNotBeNullOrEmpty();
}
