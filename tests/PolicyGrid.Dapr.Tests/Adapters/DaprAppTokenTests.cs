using System.Net;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.TestHost;
using Microsoft.Extensions.DependencyInjection;
using Shouldly;

namespace PolicyGrid.Dapr.Tests.Adapters;

/// <summary>The app API token check, over a real WebApplication composed like the functions and graphs apps.</summary>
public sealed class DaprAppTokenTests
{
    private const string Token = "4f7d0c2e9b1a4e6f8a3c5d7e9f1b3a5c";
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static async Task<WebApplication> StartAsync(string? appToken, params string[] openEndpoints)
    {
        var builder = WebApplication.CreateBuilder();
        builder.WebHost.UseTestServer();
        if (appToken is not null) builder.Configuration[DaprAppToken.ConfigurationKey] = appToken;
        builder.Services.AddHealthChecks();
        var app = builder.Build();
        app.UseDaprAppToken(DaprNames.Apps.Functions, openEndpoints);
        app.MapHealthChecks("/healthz");
        app.MapHealthChecks("/readyz");
        app.MapPut("/actors/PolicyFunctionActor/f/method/Call", () => "called");
        app.MapPost("/jobs/{job_id}/result", () => "reported").WithName("ReportJobResult");
        app.MapPost("/jobs/submit/{executor_id}", () => "submitted").WithName("SubmitJob");
        await app.StartAsync(Ct);
        return app;
    }

    private static HttpRequestMessage Call(string? header = null, string path = "/actors/PolicyFunctionActor/f/method/Call", HttpMethod? method = null)
    {
        var request = new HttpRequestMessage(method ?? HttpMethod.Put, path);
        if (header is not null) request.Headers.Add("dapr-api-token", header);
        return request;
    }

    private static async Task<JsonNode> RefusalAsync(HttpResponseMessage response)
    {
        response.StatusCode.ShouldBe(HttpStatusCode.Unauthorized);
        response.Content.Headers.ContentType!.MediaType.ShouldBe("application/json");
        var body = JsonNode.Parse(await response.Content.ReadAsStringAsync(Ct))!;
        body["success"]!.GetValue<bool>().ShouldBeFalse();
        body["code"]!.GetValue<string>().ShouldBe("unauthorized");
        body["message"]!.GetValue<string>().ShouldContain("policy-functions only takes calls from its Dapr sidecar");
        return body;
    }

    [Fact]
    public async Task A_call_without_the_header_is_refused_saying_it_is_missing()
    {
        await using var app = await StartAsync(Token);

        var body = await RefusalAsync(await app.GetTestClient().SendAsync(Call(), Ct));

        body["message"]!.GetValue<string>().ShouldContain("dapr-api-token header is missing");
    }

    [Fact]
    public async Task A_call_with_a_wrong_token_is_refused_saying_it_is_wrong()
    {
        await using var app = await StartAsync(Token);

        var body = await RefusalAsync(await app.GetTestClient().SendAsync(Call(Token[..^1] + "0"), Ct));

        body["message"]!.GetValue<string>().ShouldContain("dapr-api-token header is wrong");
        body["message"]!.GetValue<string>().ShouldNotContain(Token);
    }

    [Fact]
    public async Task A_call_with_the_token_passes()
    {
        await using var app = await StartAsync(Token);

        var response = await app.GetTestClient().SendAsync(Call(Token), Ct);

        response.StatusCode.ShouldBe(HttpStatusCode.OK);
        (await response.Content.ReadAsStringAsync(Ct)).ShouldBe("called");
    }

    [Theory]
    [InlineData("GET", "/healthz")]
    [InlineData("HEAD", "/healthz")]
    [InlineData("GET", "/readyz")]
    [InlineData("HEAD", "/readyz")]
    public async Task Probes_need_no_token(string method, string path)
    {
        await using var app = await StartAsync(Token);

        var response = await app.GetTestClient().SendAsync(Call(path: path, method: new HttpMethod(method)), Ct);

        response.StatusCode.ShouldBe(HttpStatusCode.OK);
    }

    [Fact]
    public async Task Only_reads_of_the_probe_paths_are_open()
    {
        await using var app = await StartAsync(Token);

        await RefusalAsync(await app.GetTestClient().SendAsync(Call(path: "/healthz", method: HttpMethod.Post), Ct));
    }

    [Fact]
    public async Task Without_an_app_api_token_every_call_passes()
    {
        await using var app = await StartAsync(appToken: null);
        var client = app.GetTestClient();

        (await client.SendAsync(Call(), Ct)).StatusCode.ShouldBe(HttpStatusCode.OK);
        (await client.SendAsync(Call("anything"), Ct)).StatusCode.ShouldBe(HttpStatusCode.OK);
    }

    [Fact]
    public async Task An_open_endpoint_is_recognised_by_the_route_it_matched_not_by_a_path_that_looks_like_it()
    {
        await using var app = await StartAsync(Token, "ReportJobResult");
        var client = app.GetTestClient();

        var reported = await client.SendAsync(Call(path: "/jobs/j-1/result", method: HttpMethod.Post), Ct);
        // Looks like /jobs/{job_id}/result, but routing picks /jobs/submit/{executor_id}: not open.
        var submitted = await client.SendAsync(Call(path: "/jobs/submit/result", method: HttpMethod.Post), Ct);

        (await reported.Content.ReadAsStringAsync(Ct)).ShouldBe("reported");
        await RefusalAsync(submitted);
    }
}
