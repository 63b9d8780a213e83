using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;
using Shouldly;

namespace PolicyGrid.Api.Tests;

/// <summary>
/// A request head over the documented limits (8 KiB target, 32 KiB of headers, 100 header lines) answers 414 / 431 in
/// the envelope, naming the limit and its setting, instead of Kestrel's bodiless refusal.
/// </summary>
public sealed class RequestHeadLimitsTests(GridServer server) : IClassFixture<GridServer>
{
    private readonly HttpClient client = server.CreateClient();

    private static void ShouldBeTooLarge(Answer answer, int status, params string[] phrases)
    {
        answer.Status.ShouldBe(status, answer.Body?.ToJsonString());
        answer.Success.ShouldBe(false);
        answer.Code.ShouldBe("too_large");
        foreach (var phrase in phrases) answer.Message.ShouldContain(phrase);
    }

    [Fact]
    public async Task A_request_target_over_8_KiB_is_a_414_envelope_naming_the_limit_and_setting()
    {
        ShouldBeTooLarge(await client.Post($"/policy/query?sort={new string('a', 9000)}", "{}"), 414,
            "request target", "limit of 8192 bytes", "PolicyGrid:Api:MaxRequestTargetBytes");
        (await client.Post($"/policy/query?sort={new string('a', 8000)}", "{}")).Status.ShouldBe(200);
    }

    [Fact]
    public async Task Headers_over_32_KiB_are_a_431_envelope_naming_the_limit_the_setting_and_the_largest_header()
    {
        var answer = await client.Call(HttpMethod.Get, "/healthz", configure: r => r.Headers.Add("X-Big", new string('a', 40000)));
        ShouldBeTooLarge(answer, 431, "limit of 32768 bytes", "PolicyGrid:Api:MaxRequestHeadersBytes", "'X-Big'");
        (await client.Call(HttpMethod.Get, "/healthz", configure: r => r.Headers.Add("X-Big", new string('a', 30000)))).Status.ShouldBe(200);
    }

    [Fact]
    public async Task More_than_100_header_lines_are_a_431_envelope_naming_the_limit_and_setting()
    {
        var answer = await client.Call(HttpMethod.Get, "/healthz", configure: r =>
        {
            for (var i = 0; i < 101; i++) r.Headers.Add($"X-H{i}", "v");
        });
        ShouldBeTooLarge(answer, 431, "limit of 100", "PolicyGrid:Api:MaxRequestHeaderCount");
        (await client.Call(HttpMethod.Get, "/healthz", configure: r =>
        {
            for (var i = 0; i < 90; i++) r.Headers.Add($"X-H{i}", "v");
        })).Status.ShouldBe(200);
    }

    [Fact]
    public void Kestrel_own_limits_sit_well_above_the_api_limits_so_the_api_answers_first()
    {
        var limits = server.Services.GetRequiredService<IOptions<KestrelServerOptions>>().Value.Limits;
        limits.MaxRequestLineSize.ShouldBe(4 * 8 * 1024);
        limits.MaxRequestHeadersTotalSize.ShouldBe(4 * 32 * 1024);
        limits.MaxRequestHeaderCount.ShouldBe(4 * 100);
    }
}

/// <summary>The settings move both the API's limits and Kestrel's above them.</summary>
public sealed class ConfiguredRequestHeadLimitsTests(ConfiguredRequestHeadLimitsTests.SmallHeadServer server) : IClassFixture<ConfiguredRequestHeadLimitsTests.SmallHeadServer>
{
    public sealed class SmallHeadServer : GridServer
    {
        public SmallHeadServer() => Settings = new()
        {
            ["PolicyGrid:Api:MaxRequestTargetBytes"] = "1000",
            ["PolicyGrid:Api:MaxRequestHeadersBytes"] = "100000",
            ["PolicyGrid:Api:MaxRequestHeaderCount"] = "20",
        };
    }

    [Fact]
    public async Task Each_limit_is_the_configured_one()
    {
        var client = server.CreateClient();
        var target = await client.Get($"/healthz?x={new string('a', 1200)}");
        target.Status.ShouldBe(414);
        target.Message.ShouldContain("limit of 1000 bytes");
        (await client.Call(HttpMethod.Get, "/healthz", configure: r => r.Headers.Add("X-Big", new string('a', 60000)))).Status.ShouldBe(200);
        var count = await client.Call(HttpMethod.Get, "/healthz", configure: r =>
        {
            for (var i = 0; i < 25; i++) r.Headers.Add($"X-H{i}", "v");
        });
        count.Status.ShouldBe(431);
        count.Message.ShouldContain("limit of 20");

        var kestrel = server.Services.GetRequiredService<IOptions<KestrelServerOptions>>().Value.Limits;
        kestrel.MaxRequestLineSize.ShouldBe(new KestrelServerLimits().MaxRequestLineSize, "never lowered below Kestrel's default");
        kestrel.MaxRequestHeadersTotalSize.ShouldBe(400000);
        kestrel.MaxRequestHeaderCount.ShouldBe(new KestrelServerLimits().MaxRequestHeaderCount);
    }
}

/// <summary>The same limits over a real Kestrel port: Kestrel lets the request through to the API's envelope.</summary>
public sealed class KestrelRequestHeadLimitsTests(KestrelGridServer server) : IClassFixture<KestrelGridServer>
{
    private static void ShouldBeEnvelope(RawAnswer answer, int status, string setting)
    {
        answer.Status.ShouldBe(status, answer.Body);
        answer.Header("Content-Type").ShouldNotBeNull().ShouldStartWith("application/json");
        answer.Json!["success"]!.GetValue<bool>().ShouldBeFalse();
        answer.Json!["code"]!.GetValue<string>().ShouldBe("too_large");
        answer.Json!["message"]!.GetValue<string>().ShouldContain(setting);
    }

    [Fact]
    public async Task A_9_KiB_url_is_the_api_414_envelope()
    {
        ShouldBeEnvelope(await server.SendAsync($"GET /healthz?x={new string('a', 9000)} HTTP/1.1\r\nHost: localhost"), 414,
            "PolicyGrid:Api:MaxRequestTargetBytes");
    }

    [Fact]
    public async Task A_40_KiB_header_is_the_api_431_envelope()
    {
        ShouldBeEnvelope(await server.SendAsync($"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Big: {new string('a', 40000)}"), 431,
            "PolicyGrid:Api:MaxRequestHeadersBytes");
    }

    [Fact]
    public async Task Two_hundred_headers_are_the_api_431_envelope()
    {
        var headers = string.Join("\r\n", Enumerable.Range(0, 200).Select(i => $"X-H{i}: v"));
        ShouldBeEnvelope(await server.SendAsync($"GET /healthz HTTP/1.1\r\nHost: localhost\r\n{headers}"), 431,
            "PolicyGrid:Api:MaxRequestHeaderCount");
    }

    [Fact]
    public async Task Past_kestrel_own_raised_limit_kestrel_still_answers_bodiless_as_documented()
    {
        var answer = await server.SendAsync($"GET /healthz?x={new string('a', 40000)} HTTP/1.1\r\nHost: localhost");
        answer.Status.ShouldBe(414);
        answer.Body.ShouldBeEmpty();
    }
}

/// <summary>A body shorter than its Content-Length, on real Kestrel: its minimum data rate ends the wait (about 6 s).</summary>
public sealed class KestrelShortBodyTests(KestrelGridServer server) : IClassFixture<KestrelGridServer>
{
    [Fact]
    public async Task A_body_shorter_than_its_content_length_is_a_400_saying_so_and_nothing_is_stored()
    {
        var name = PolicyDocuments.Unique("short_body");
        var json = $$"""{"name": "{{name}}", "version": "1.0", "release_tag": "beta", "code": "bundle://sha256/{{new string('0', 64)}}", "type": "x"}""";

        var answer = await server.SendAsync($"POST /policy HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {json.Length + 50}", json);

        answer.Status.ShouldBe(400, answer.Body);
        answer.Json!["code"]!.GetValue<string>().ShouldBe("bad_request");
        answer.Json!["message"]!.GetValue<string>().ShouldStartWith($"request body stopped arriving before the {json.Length + 50} bytes its Content-Length declared");
        answer.Json!["message"]!.GetValue<string>().ShouldContain("bytes/s after");
        var store = server.Services.GetRequiredService<PolicyGrid.Core.Ports.IDocumentStore>();
        (await store.GetAsync(PolicyGrid.Core.Ports.Collections.Policies, $"{name}:1.0-beta", TestContext.Current.CancellationToken)).ShouldBeNull();
        (await server.SendAsync("GET /healthz HTTP/1.1\r\nHost: localhost")).Status.ShouldBe(200);
    }
}
