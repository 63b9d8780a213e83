using System.Text;
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

    [Theory]
    [InlineData("/healthz")]
    [InlineData("/readyz")]
    [InlineData("/executor/local")]
    [InlineData("/openapi/v1.json")]
    public async Task Head_answers_wherever_get_does_with_the_same_status_and_headers(string path)
    {
        var get = await client.Get(path);
        var head = await client.Call(HttpMethod.Head, path);

        head.Status.ShouldBe(get.Status);
        head.Status.ShouldBe(200);
        head.Header("Content-Type").ShouldBe(get.Header("Content-Type"));
        head.Header("ETag").ShouldBe(get.Header("ETag"));
    }

    [Theory]
    [InlineData("PATCH", "/executor/local")]
    [InlineData("OPTIONS", "/policy/ip_allowlist:1.0-beta")]
    public async Task A_405_on_a_document_lists_head_beside_get_in_allow_as_head_is_answered_there(string method, string path)
    {
        var answer = await client.Call(new HttpMethod(method), path);

        answer.Status.ShouldBe(405);
        answer.Header("Allow")!.Split(',', StringSplitOptions.TrimEntries).ShouldBe(["DELETE", "GET", "HEAD", "PUT"]);
        answer.Message.ShouldContain("allowed: DELETE, GET, HEAD, PUT");
    }

    [Fact]
    public async Task Head_of_a_missing_document_is_the_same_404()
    {
        var answer = await client.Call(HttpMethod.Head, "/executor/nobody-here");
        answer.Status.ShouldBe(404);
    }

    [Fact]
    public async Task Head_on_a_route_without_get_is_a_405_naming_head()
    {
        var bundles = await client.Call(HttpMethod.Head, "/bundles");
        bundles.Status.ShouldBe(405);
        bundles.Message.ShouldContain("HEAD is not allowed on /bundles");
        var query = await client.Call(HttpMethod.Head, "/policy/query");
        query.Status.ShouldBe(405);
        query.Header("Allow").ShouldBe("POST");
        query.Message.ShouldContain("HEAD is not allowed on /policy/query");
    }

    [Theory]
    [InlineData("POST", "/function/call_function/", "{name}", "POST /function/call_function/{name}")]
    [InlineData("POST", "/function//management", "{name}", "POST /function/{name}/management")]
    [InlineData("DELETE", "/function/deployments/remove/", "{name}", "DELETE /function/deployments/remove/{name}")]
    [InlineData("GET", "/jobs/", "{job_id}", "GET /jobs/{job_id}")]
    [InlineData("GET", "/graph/executions/", "{id}", "GET /graph/executions/{id}")]
    [InlineData("DELETE", "/graph/executions/", "{id}", "DELETE /graph/executions/{id}")]
    [InlineData("POST", "/executor//execute_policy", "{id}", "POST /executor/{id}/execute_policy")]
    [InlineData("POST", "/call_function/", "{name}", "POST /call_function/{name}")]
    public async Task A_route_with_its_id_segment_left_empty_is_a_400_naming_the_missing_segment(string method, string path, string missing, string route)
    {
        var answer = await client.Call(new HttpMethod(method), path, method == "GET" || method == "DELETE" ? null : "{}");

        answer.Status.ShouldBe(400, answer.Body?.ToJsonString());
        answer.Code.ShouldBe("bad_request");
        answer.Message.ShouldContain($"{method} {path} is missing {missing}");
        answer.Message.ShouldContain($"the route is {route}");
    }
}

/// <summary>HEAD over a real Kestrel port: the GET's status and headers, and no body on the wire.</summary>
public sealed class KestrelHeadTests(KestrelGridServer server) : IClassFixture<KestrelGridServer>
{
    [Theory]
    [InlineData("/healthz")]
    [InlineData("/executor/local")]
    public async Task Head_sends_the_get_headers_without_a_body(string path)
    {
        var get = await server.SendAsync($"GET {path} HTTP/1.1\r\nHost: localhost");
        var head = await server.SendAsync($"HEAD {path} HTTP/1.1\r\nHost: localhost");

        get.Status.ShouldBe(200);
        get.Body.ShouldNotBeEmpty();
        head.Status.ShouldBe(200);
        head.Header("Content-Type").ShouldBe(get.Header("Content-Type"));
        head.Header("ETag").ShouldBe(get.Header("ETag"));
        head.Body.ShouldBeEmpty();
    }
}

/// <summary>JSON answers go with their length, not chunked: successes, failures, and a HEAD's headers alike.</summary>
public sealed class KestrelContentLengthTests(KestrelGridServer server) : IClassFixture<KestrelGridServer>
{
    [Theory]
    [InlineData("GET /executor/local HTTP/1.1", "", 200)]
    [InlineData("POST /policy/query HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 2", "{}", 200)]
    [InlineData("GET /policy/nobody:1.0-beta HTTP/1.1", "", 404)]
    [InlineData("POST /policy/query HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 1", "[", 400)]
    public async Task Json_answers_carry_their_content_length_and_are_not_chunked(string requestLine, string body, int status)
    {
        var answer = await server.SendAsync($"{requestLine}\r\nHost: localhost", body);

        answer.Status.ShouldBe(status);
        answer.Header("Transfer-Encoding").ShouldBeNull();
        answer.Header("Content-Type").ShouldBe("application/json; charset=utf-8");
        answer.Header("Content-Length").ShouldBe(Encoding.UTF8.GetByteCount(answer.Body).ToString(System.Globalization.CultureInfo.InvariantCulture));
        answer.Json!["success"]!.GetValue<bool>().ShouldBe(status == 200);
    }

    [Fact]
    public async Task Head_announces_the_length_the_get_would_send()
    {
        var get = await server.SendAsync("GET /executor/local HTTP/1.1\r\nHost: localhost");
        var head = await server.SendAsync("HEAD /executor/local HTTP/1.1\r\nHost: localhost");

        head.Header("Content-Length").ShouldBe(get.Header("Content-Length"));
        head.Header("Content-Length").ShouldNotBeNull();
        head.Body.ShouldBeEmpty();
    }
}

/// <summary>What <see cref="PolicyGrid.Api.Envelope.JsonAnswer"/> sends: the whole body, whatever its size, with its length.</summary>
public sealed class JsonAnswerTests
{
    [Theory]
    [InlineData(0)]
    [InlineData(4_000)]
    [InlineData(300_000)]
    public async Task The_body_is_the_serialized_envelope_and_its_length_is_announced(int textLength)
    {
        var http = new Microsoft.AspNetCore.Http.DefaultHttpContext
        {
            RequestServices = Microsoft.Extensions.DependencyInjection.ServiceCollectionContainerBuilderExtensions.BuildServiceProvider(new Microsoft.Extensions.DependencyInjection.ServiceCollection()),
        };
        var sent = new MemoryStream();
        http.Response.Body = sent;
        var data = new System.Text.Json.Nodes.JsonObject { ["text"] = new string('é', textLength), ["n"] = 1 };

        await PolicyGrid.Api.Envelope.JsonAnswer.WriteAsync(http, 200, new PolicyGrid.Api.Envelope.Envelope<System.Text.Json.Nodes.JsonObject>(data));

        http.Response.ContentLength.ShouldBe(sent.Length);
        http.Response.ContentType.ShouldBe("application/json; charset=utf-8");
        var answer = System.Text.Json.Nodes.JsonNode.Parse(sent.ToArray())!;
        answer["success"]!.GetValue<bool>().ShouldBeTrue();
        answer["data"]!["text"]!.GetValue<string>().ShouldBe(new string('é', textLength));
    }
}
