using System.Text.Json.Nodes;
using Shouldly;

namespace PolicyGrid.Api.Tests;

/// <summary>What every client meets before any domain logic: envelopes for framework errors, probes, the API description.</summary>
public sealed class SurfaceTests(GridServer server) : IClassFixture<GridServer>
{
    private readonly HttpClient client = server.CreateClient();

    [Fact]
    public async Task An_unknown_route_is_a_404_envelope_naming_it()
    {
        var answer = await client.Get("/policies/everything");
        answer.Status.ShouldBe(404);
        answer.Success.ShouldBe(false);
        answer.Code.ShouldBe("not_found");
        answer.Message!.ShouldContain("/policies/everything");
    }

    [Fact]
    public async Task A_wrong_method_is_an_envelope_listing_the_allowed_ones()
    {
        var answer = await client.Call(HttpMethod.Patch, "/policy/x:1.0-beta", "{}");
        answer.Status.ShouldBe(405);
        answer.Success.ShouldBe(false);
        answer.Message!.ShouldContain("PATCH");
    }

    [Fact]
    public async Task Health_and_readiness_answer_outside_the_envelope()
    {
        var live = await client.Get("/healthz");
        live.Status.ShouldBe(200);
        live.Body!["status"]!.GetValue<string>().ShouldBe("ok");
        var ready = await client.Get("/readyz");
        ready.Status.ShouldBe(200);
        ready.Body!["status"]!.GetValue<string>().ShouldBe("ready");
    }

    [Fact]
    public async Task The_openapi_document_names_summarises_and_tags_every_operation()
    {
        var answer = await client.Get("/openapi/v1.json");
        answer.Status.ShouldBe(200);
        var paths = answer.Body!["paths"]!.AsObject();
        foreach (var expected in new[] { "/policy", "/policy/{uri}", "/policy/query", "/executor", "/executor/{id}", "/executor/query",
                     "/executor/{id}/execute_policy", "/executor/{id}/management", "/bundles", "/bundles/sha256/{sha256}", "/decisions/query",
                     "/execute_policy", "/management", "/healthz", "/readyz" })
            paths.ContainsKey(expected).ShouldBeTrue($"{expected} is not in the OpenAPI document");
        foreach (var (path, item) in paths)
            foreach (var (method, op) in item!.AsObject())
            {
                if (op is not JsonObject operation || !operation.ContainsKey("responses")) continue;
                operation["operationId"].ShouldNotBeNull($"{method} {path} has no name");
                operation["summary"].ShouldNotBeNull($"{method} {path} has no summary");
                operation["tags"]!.AsArray().Count.ShouldBeGreaterThan(0, $"{method} {path} has no tag");
            }
    }

    [Fact]
    public async Task The_api_reference_page_is_served_at_docs()
    {
        var response = await client.GetAsync("/docs/", TestContext.Current.CancellationToken);
        response.StatusCode.ShouldBe(System.Net.HttpStatusCode.OK);
        (await response.Content.ReadAsStringAsync(TestContext.Current.CancellationToken)).ShouldContain("PolicyGrid API");
    }

    [Fact]
    public async Task Decisions_query_answers_a_list_and_rejects_unknown_operators()
    {
        var all = await client.Post("/decisions/query", "{}");
        all.Status.ShouldBe(200);
        all.Data.ShouldBeOfType<JsonArray>();
        var bad = await client.Post("/decisions/query", """{"caller": {"$like": "a%"}}""");
        bad.Status.ShouldBe(400);
        bad.Message!.ShouldContain("$like");
    }
}
