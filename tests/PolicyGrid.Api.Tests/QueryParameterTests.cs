using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;
using Shouldly;
using static PolicyGrid.Api.Tests.PolicyDocuments;

namespace PolicyGrid.Api.Tests;

/// <summary>A bad true/false or number in the query string is a 400 that names the parameter and what it takes.</summary>
public sealed class QueryParameterTests(GridServer server) : IClassFixture<GridServer>
{
    private readonly HttpClient client = server.CreateClient();

    [Theory]
    [InlineData("force=yes", "must be true or false, not 'yes'")]
    [InlineData("force=1", "must be true or false, not '1'")]
    [InlineData("force=", "must be true or false, not ''")]
    [InlineData("force=true&force=false", "is given 2 times; give it once, true or false")]
    public async Task A_bad_force_on_delete_is_a_400_naming_it_and_the_policy_stays(string query, string phrase)
    {
        var name = Unique("force");
        (await client.Post("/policy", IpAllowlist(name, await server.StoreBundleAsync()).ToJsonString())).Status.ShouldBe(200);

        var answer = await client.Delete($"/policy/{Uri(name)}?{query}");

        answer.Status.ShouldBe(400, answer.Body?.ToJsonString());
        answer.Code.ShouldBe("bad_request");
        answer.Message.ShouldBe($"query parameter force {phrase}");
        (await client.Get($"/policy/{Uri(name)}")).Status.ShouldBe(200);
    }

    [Fact]
    public async Task Force_takes_true_or_false_in_any_case()
    {
        var name = Unique("force_case");
        (await client.Post("/policy", IpAllowlist(name, await server.StoreBundleAsync()).ToJsonString())).Status.ShouldBe(200);
        (await client.Delete($"/policy/{Uri(name)}?force=FALSE")).Status.ShouldBe(200);
        (await client.Get($"/policy/{Uri(name)}")).Status.ShouldBe(404);
    }

    [Theory]
    [InlineData("/jobs/00000000-0000-0000-0000-000000000000?wait=soon", "wait 'soon' must be a number of seconds")]
    [InlineData("/jobs/00000000-0000-0000-0000-000000000000?wait=-1", "wait '-1' must be a number of seconds")]
    public async Task A_bad_wait_is_a_400_naming_it(string path, string phrase)
    {
        var answer = await client.Get(path);
        answer.Status.ShouldBe(400);
        answer.Message.ShouldContain(phrase);
    }

    [Theory]
    [InlineData("/policy/query", "offset=20", "query parameter 'offset' is not one a query takes")]
    [InlineData("/policy/query", "limit=5&order_by=name", "query parameter 'order_by' is not one a query takes")]
    [InlineData("/jobs/query", "page=2", "query parameter 'page'")]
    [InlineData("/decisions/query", "filter=%7B%7D", "the filter goes in the body")]
    [InlineData("/graphs/query", "sort_by=graph_name", "?limit=, ?skip= and ?sort=")]
    public async Task An_unknown_query_parameter_on_a_query_is_a_400_naming_it(string route, string query, string phrase)
    {
        // It answered 200 with the first page, as if the paging or order asked for had been applied.
        var answer = await client.Post($"{route}?{query}", "{}");
        answer.Status.ShouldBe(400, answer.Body?.ToJsonString());
        answer.Code.ShouldBe("bad_request");
        answer.Message.ShouldContain(phrase);
    }

    [Fact]
    public async Task Limit_skip_and_sort_are_read_in_any_case() =>
        (await client.Post("/policy/query?LIMIT=1&Skip=0&Sort=name:asc", "{}")).Status.ShouldBe(200);

    [Theory]
    [InlineData("limit=ten", "limit 'ten' must be a whole number from 1 to 1000")]
    [InlineData("limit=5000", "limit 5000 is over the maximum of 1000")]
    [InlineData("skip=-3", "skip '-3' must be a whole number from 0 to 2147483647")]
    [InlineData("skip=2147483648", "skip '2147483648' must be a whole number from 0 to 2147483647")]
    public async Task A_bad_limit_or_skip_is_a_400_naming_it(string query, string phrase)
    {
        var answer = await client.Post($"/policy/query?{query}", "{}");
        answer.Status.ShouldBe(400);
        answer.Message.ShouldContain(phrase);
    }
}

/// <summary>The same over <c>serve</c> as it runs (Production, a real port), where the framework's own refusal is bare.</summary>
public sealed class ProductionQueryParameterTests(KestrelGridServer server) : IClassFixture<KestrelGridServer>
{
    [Fact]
    public async Task A_bad_force_is_a_400_naming_it()
    {
        var answer = await server.SendAsync("DELETE /policy/nobody:1.0-x?force=yes HTTP/1.1\r\nHost: localhost");
        answer.Status.ShouldBe(400);
        answer.Json!["message"]!.GetValue<string>().ShouldBe("query parameter force must be true or false, not 'yes'");
    }

    [Fact]
    public void Any_parameter_the_framework_cannot_bind_is_answered_with_its_message_not_a_bare_400()
    {
        server.Services.GetRequiredService<IOptions<RouteHandlerOptions>>().Value.ThrowOnBadRequest.ShouldBeTrue();
    }
}
