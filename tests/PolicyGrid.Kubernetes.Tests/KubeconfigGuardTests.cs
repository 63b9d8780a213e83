using Xunit;
using System.Text.Json.Nodes;
using PolicyGrid.Core.Errors;
using Shouldly;

namespace PolicyGrid.Kubernetes.Tests;

public class KubeconfigGuardTests
{
    public const string Secret = "s3cr3t-token-value";

    public static JsonObject Kubeconfig(string server = "https://10.0.0.1:6443", Action<JsonObject>? user = null, Action<JsonObject>? cluster = null, string? ns = "team-a")
    {
        var userBody = new JsonObject { ["token"] = Secret };
        user?.Invoke(userBody);
        var clusterBody = new JsonObject { ["server"] = server };
        cluster?.Invoke(clusterBody);
        var context = new JsonObject { ["cluster"] = "c1", ["user"] = "u1" };
        if (ns is not null) context["namespace"] = ns;
        return new JsonObject
        {
            ["apiVersion"] = "v1",
            ["kind"] = "Config",
            ["current-context"] = "ctx",
            ["clusters"] = new JsonArray(new JsonObject { ["name"] = "c1", ["cluster"] = clusterBody }),
            ["users"] = new JsonArray(new JsonObject { ["name"] = "u1", ["user"] = userBody }),
            ["contexts"] = new JsonArray(new JsonObject { ["name"] = "ctx", ["context"] = context }),
        };
    }

    [Fact]
    public void A_token_kubeconfig_becomes_a_client_configuration_for_its_current_context()
    {
        var config = KubeconfigGuard.ToClientConfiguration(Kubeconfig(), "fallback");
        config.Host.ShouldBe("https://10.0.0.1:6443");
        config.AccessToken.ShouldBe(Secret);
        config.Namespace.ShouldBe("team-a");
    }

    [Fact]
    public void Without_a_namespace_in_the_context_the_operators_default_is_used()
    {
        KubeconfigGuard.ToClientConfiguration(Kubeconfig(ns: null), "policygrid").Namespace.ShouldBe("policygrid");
    }

    public static TheoryData<string, string, string> RefusedUserFields => new()
    {
        { "exec", """{"apiVersion":"client.authentication.k8s.io/v1","command":"/bin/sh","args":["-c","touch /tmp/pwned"]}""", "exec credential plugins are refused" },
        { "auth-provider", """{"name":"gcp","config":{"cmd-path":"/usr/bin/gcloud"}}""", "auth-provider plugins are refused" },
        { "client-certificate", "\"/etc/ssl/client.crt\"", "file paths are refused" },
        { "client-key", "\"/etc/ssl/client.key\"", "file paths are refused" },
        { "tokenFile", "\"/var/run/secrets/token\"", "file paths are refused" },
    };

    [Theory]
    [MemberData(nameof(RefusedUserFields))]
    public void Plugins_and_file_paths_in_the_user_are_refused_naming_the_field(string field, string value, string why)
    {
        var e = Should.Throw<PolicyGridException>(() =>
            KubeconfigGuard.ToClientConfiguration(Kubeconfig(user: u => u[field] = JsonNode.Parse(value)), "ns"));
        e.Status.ShouldBe(400);
        e.Code.ShouldBe("validation_failed");
        e.Errors.ShouldContain(x => x.Path == $"cluster_config.users[0].user.{field}" && x.Message.Contains(why));
        e.Message.ShouldNotContain(Secret);
        e.Message.ShouldNotContain("/tmp/pwned");
    }

    [Fact]
    public void A_certificate_authority_file_path_is_refused()
    {
        var e = Should.Throw<PolicyGridException>(() =>
            KubeconfigGuard.ToClientConfiguration(Kubeconfig(cluster: c => c["certificate-authority"] = "/etc/ca.crt"), "ns"));
        e.Status.ShouldBe(400);
        e.Errors.ShouldContain(x => x.Path == "cluster_config.clusters[0].cluster.certificate-authority");
    }

    [Fact]
    public void Unknown_fields_are_refused_rather_than_ignored()
    {
        var e = Should.Throw<PolicyGridException>(() =>
            KubeconfigGuard.ToClientConfiguration(Kubeconfig(user: u => u["mystery"] = "x"), "ns"));
        e.Errors.ShouldContain(x => x.Path == "cluster_config.users[0].user.mystery");
    }

    [Theory]
    [InlineData("file:///etc/passwd")]
    [InlineData("not a url")]
    public void The_server_must_be_an_http_url(string server)
    {
        var e = Should.Throw<PolicyGridException>(() => KubeconfigGuard.ToClientConfiguration(Kubeconfig(server: server), "ns"));
        e.Errors.ShouldContain(x => x.Path == "cluster_config.clusters[0].cluster.server");
    }

    [Fact]
    public void A_missing_or_non_object_kubeconfig_is_a_400()
    {
        Should.Throw<PolicyGridException>(() => KubeconfigGuard.ToClientConfiguration(null, "ns")).Message.ShouldContain("cluster_config");
        Should.Throw<PolicyGridException>(() => KubeconfigGuard.ToClientConfiguration(JsonValue.Create("apiVersion: v1"), "ns")).Status.ShouldBe(400);
    }

    [Fact]
    public void A_current_context_that_names_nothing_is_a_400()
    {
        var config = Kubeconfig();
        config["current-context"] = "elsewhere";
        Should.Throw<PolicyGridException>(() => KubeconfigGuard.ToClientConfiguration(config, "ns"))
            .Errors.ShouldContain(x => x.Path == "cluster_config.current-context");
    }

    [Fact]
    public void A_client_certificate_without_its_key_is_a_400()
    {
        var e = Should.Throw<PolicyGridException>(() =>
            KubeconfigGuard.ToClientConfiguration(Kubeconfig(user: u => u["client-certificate-data"] = "QUJD"), "ns"));
        e.Message.ShouldContain("client-key-data");
    }
}
