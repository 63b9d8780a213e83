using System.Net;
using System.Text;
using System.Text.Json.Nodes;
using NSubstitute;
using PolicyGrid.Core.Ports;
using Shouldly;

namespace PolicyGrid.Dapr.Tests.Executor;

/// <summary>The executor app, composed by its own Program, with an app API token: only its sidecar may call it, except job pods' two routes.</summary>
public sealed class ExecutorAppTokenTests : IDisposable
{
    private const string Token = "b0e3c6a9d2f5481c9e7a0b3d6f9c2e5a";
    private const string SidecarOnly = "policy-executor only takes calls from its Dapr sidecar";
    private readonly ExecutorAppFactory app = new();
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public ExecutorAppTokenTests()
    {
        app.Settings["APP_API_TOKEN"] = Token;
        app.Policies.ExecuteAsync(Arg.Any<ExecutionRequest>(), Arg.Any<CallerIdentity>(), Arg.Any<CancellationToken>())
            .Returns(new PolicyResult(new JsonObject { ["allowed"] = true }));
    }

    public void Dispose() => app.Dispose();

    private static HttpRequestMessage Post(string path, string body, string? appToken = null)
    {
        var request = new HttpRequestMessage(HttpMethod.Post, path) { Content = new StringContent(body, Encoding.UTF8, "application/json") };
        if (appToken is not null) request.Headers.Add("dapr-api-token", appToken);
        return request;
    }

    private static async Task<string> MessageOf(HttpResponseMessage response) =>
        JsonNode.Parse(await response.Content.ReadAsStringAsync(Ct))!["message"]!.GetValue<string>();

    [Fact]
    public async Task The_node_api_answers_only_the_sidecar()
    {
        var client = app.CreateClient();
        const string call = """{"policy_rule_uri": "ip_allowlist:1.0-beta", "input_data": {"ip": "10.0.0.1"}}""";

        var direct = await client.SendAsync(Post("/execute_policy", call), Ct);
        var viaSidecar = await client.SendAsync(Post("/execute_policy", call, Token), Ct);

        direct.StatusCode.ShouldBe(HttpStatusCode.Unauthorized);
        (await MessageOf(direct)).ShouldContain(SidecarOnly);
        viaSidecar.StatusCode.ShouldBe(HttpStatusCode.OK, await viaSidecar.Content.ReadAsStringAsync(Ct));
    }

    [Fact]
    public async Task Probes_reach_the_app_without_the_token()
    {
        var response = await app.CreateClient().GetAsync("/healthz", Ct);

        response.StatusCode.ShouldBe(HttpStatusCode.OK);
    }

    [Fact]
    public async Task Job_pods_reach_the_result_callback_and_bundle_download_which_judge_their_callers_themselves()
    {
        var client = app.CreateClient();

        // Past the app token check: the route's own answers (no per-job token; not a sha256).
        var result = await client.SendAsync(Post("/jobs/j-1/result", """{"status": "succeeded"}"""), Ct);
        var bundle = await client.GetAsync("/bundles/sha256/not-a-hash", Ct);

        result.StatusCode.ShouldBe(HttpStatusCode.Unauthorized);
        (await MessageOf(result)).ShouldContain("result token for job 'j-1'");
        bundle.StatusCode.ShouldBe(HttpStatusCode.BadRequest);
        (await MessageOf(bundle)).ShouldContain("is not a sha256");
    }

    [Fact]
    public async Task A_path_that_only_looks_like_the_result_callback_is_not_open()
    {
        // Routing sends POST /jobs/submit/result to "submit a job to executor result", not to a job's result callback.
        var response = await app.CreateClient().SendAsync(Post("/jobs/submit/result", "{}"), Ct);

        response.StatusCode.ShouldBe(HttpStatusCode.Unauthorized);
        (await MessageOf(response)).ShouldContain(SidecarOnly);
    }
}
