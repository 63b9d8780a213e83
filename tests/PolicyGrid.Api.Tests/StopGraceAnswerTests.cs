using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using PolicyGrid.Api.Envelope;
using Shouldly;

namespace PolicyGrid.Api.Tests;

/// <summary>The 503 a call still running at the end of the server's stop is answered (<see cref="StopGrace"/>).</summary>
public sealed class StopGraceAnswerTests
{
    [Fact]
    public async Task A_graph_run_stopped_by_the_servers_stop_keeps_its_execution_id_on_the_503()
    {
        var lifetime = new StoppingLifetime();
        // No shutdown time at all: the grace runs out the moment the stop begins.
        using var grace = new StopGrace(lifetime, Options.Create(new HostOptions { ShutdownTimeout = TimeSpan.Zero }));
        var middleware = new ErrorEnvelopeMiddleware(async context =>
        {
            // A synchronous graph run names its execution id before its nodes run (their decision records carry it) ...
            context.Response.Headers[ErrorEnvelopeMiddleware.ExecutionIdHeader] = "run-1";
            // ... and is still running when the server stops.
            lifetime.StopApplication();
            await Task.Delay(Timeout.Infinite, context.RequestAborted);
        }, NullLogger<ErrorEnvelopeMiddleware>.Instance, [], grace);
        var http = new DefaultHttpContext { RequestServices = new ServiceCollection().BuildServiceProvider() };
        http.Request.Method = "POST";
        http.Response.Body = new MemoryStream();

        await middleware.InvokeAsync(http);

        http.Response.StatusCode.ShouldBe(503);
        var body = JsonNode.Parse(((MemoryStream)http.Response.Body).ToArray())!;
        body["code"]!.GetValue<string>().ShouldBe("backend_unavailable");
        body["message"]!.GetValue<string>().ShouldStartWith("the server is stopping");
        http.Response.Headers[ErrorEnvelopeMiddleware.ExecutionIdHeader].ToString().ShouldBe("run-1");
    }
}
