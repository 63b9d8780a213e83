using System.Net;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.TestHost;
using Microsoft.Extensions.DependencyInjection;
using Shouldly;

namespace PolicyGrid.Dapr.Tests.Executor;

/// <summary>
/// Without an app API token, the executor's pub/sub routes take calls only over loopback, as its sidecar makes them:
/// an executor node exposed with API tokens (create-infra) must not run evaluation events posted from elsewhere.
/// </summary>
public sealed class SidecarRoutesTests : IDisposable
{
    private readonly ExecutorAppFactory app = new();
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public void Dispose() => app.Dispose();

    /// <summary>The app as reached from <paramref name="caller"/> (the test server has no address of its own).</summary>
    private HttpClient From(string caller) =>
        app.WithWebHostBuilder(b => b.ConfigureTestServices(s => s.AddSingleton<IStartupFilter>(new CallerAddress(IPAddress.Parse(caller))))).CreateClient();

    private sealed class CallerAddress(IPAddress address) : IStartupFilter
    {
        public Action<IApplicationBuilder> Configure(Action<IApplicationBuilder> next) => builder =>
        {
            builder.Use((context, following) =>
            {
                context.Connection.RemoteIpAddress = address;
                return following(context);
            });
            next(builder);
        };
    }

    [Theory]
    [InlineData("10.1.2.3")]
    [InlineData("::ffff:10.1.2.3")]
    public async Task A_caller_off_loopback_is_refused_on_both_routes_naming_the_way_to_allow_it(string caller)
    {
        var client = From(caller);

        var subscribe = await client.GetAsync("/dapr/subscribe", Ct);
        var deliver = await client.PostAsync("/" + DaprNames.EvaluationsRoute.TrimStart('/'), new StringContent("{}", System.Text.Encoding.UTF8, "application/cloudevents+json"), Ct);

        subscribe.StatusCode.ShouldBe(HttpStatusCode.Forbidden);
        deliver.StatusCode.ShouldBe(HttpStatusCode.Forbidden);
        var message = await deliver.Content.ReadAsStringAsync(Ct);
        message.ShouldContain("is for this app's Dapr sidecar, which calls it over loopback");
        message.ShouldContain("APP_API_TOKEN");
        app.Published.ShouldBeEmpty();
    }

    [Theory]
    [InlineData("127.0.0.1")]
    [InlineData("::1")]
    public async Task The_sidecar_on_loopback_is_answered(string caller)
    {
        var subscribe = await From(caller).GetAsync("/dapr/subscribe", Ct);

        subscribe.StatusCode.ShouldBe(HttpStatusCode.OK, await subscribe.Content.ReadAsStringAsync(Ct));
    }

    [Fact]
    public async Task With_an_app_api_token_the_token_decides_not_the_address()
    {
        app.Settings["APP_API_TOKEN"] = "c1f4a7d0e3b6492f8a5c1e4b7d0a3f6c";
        var request = new HttpRequestMessage(HttpMethod.Get, "/dapr/subscribe");
        request.Headers.Add("dapr-api-token", "c1f4a7d0e3b6492f8a5c1e4b7d0a3f6c");

        var response = await From("10.1.2.3").SendAsync(request, Ct);

        response.StatusCode.ShouldBe(HttpStatusCode.OK, await response.Content.ReadAsStringAsync(Ct));
    }
}
