using Shouldly;

namespace PolicyGrid.Api.Tests;

/// <summary>Which methods a route answers: the query routes are POST only, and HEAD is answered wherever GET is.</summary>
public sealed class MethodTests(GridServer server) : IClassFixture<GridServer>
{
    private readonly HttpClient client = server.CreateClient();

    [Theory]
    [InlineData("GET", "/policy/query", "GET /policy/{uri}")]
    [InlineData("PUT", "/policy/query", "GET /policy/{uri}")]
    [InlineData("DELETE", "/policy/query", "GET /policy/{uri}")]
    [InlineData("TRACE", "/policy/query", "GET /policy/{uri}")]
    [InlineData("GET", "/executor/query", "GET /executor/{executor_id}")]
    [InlineData("DELETE", "/executor/query", "GET /executor/{executor_id}")]
    [InlineData("GET", "/jobs/query", "GET /jobs/{job_id}")]
    [InlineData("GET", "/graphs/query", "GET /graphs/{uri}")]
    [InlineData("GET", "/function/query", "GET /function/{function_id}")]
    public async Task Any_method_but_post_on_a_query_route_is_a_405_allowing_post_and_saying_to_post_a_filter(string method, string path, string read)
    {
        var answer = await client.Call(new HttpMethod(method), path);

        answer.Status.ShouldBe(405, answer.Body?.ToJsonString());
        answer.Header("Allow").ShouldBe("POST");
        answer.Success.ShouldBe(false);
        answer.Code.ShouldBe("bad_request");
        answer.Message.ShouldContain($"{method} is not allowed on {path}; allowed: POST");
        answer.Message.ShouldContain($"POST {path} with a filter as the JSON body");
        answer.Message.ShouldContain(read);
    }

    [Fact]
    public async Task Post_on_a_query_route_still_queries()
    {
        var answer = await client.Post("/executor/query", "{}");
        answer.Status.ShouldBe(200);
        answer.Data!.AsArray().ShouldNotBeEmpty();
    }
}
