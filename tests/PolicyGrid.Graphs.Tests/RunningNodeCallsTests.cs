using System.Text.Json.Nodes;
using Microsoft.Extensions.Logging;
using PolicyGrid.Core.Ports;
using PolicyGrid.Embedded.Graphs;
using Shouldly;

namespace PolicyGrid.Graphs.Tests;

public sealed class RunningNodeCallsTests
{
    [Fact]
    public async Task The_stop_waits_for_node_calls_under_way_and_names_each_one_still_running_when_its_time_runs_out()
    {
        var log = new LogCapture();
        using var loggers = new LoggerFactory([log]);
        var calls = new RunningNodeCalls(loggers.CreateLogger<RunningNodeCalls>());
        var ending = new TaskCompletionSource<JsonObject>();
        var stuck = new TaskCompletionSource<JsonObject>();
        var run = new FunctionCallOrigin("alice", "checks:1-t", "e1");
        calls.Add(ending.Task, "A", run);
        calls.Add(stuck.Task, "B", run);
        calls.Add(Task.FromResult(new JsonObject()), "C", run); // ended already: nothing to wait for
        calls.Count.ShouldBe(2);

        using var shutdownTimeout = new CancellationTokenSource();
        var stop = calls.StopAsync(shutdownTimeout.Token);
        ending.SetResult([]);
        calls.Count.ShouldBe(1);
        stop.IsCompleted.ShouldBeFalse("the stop went on while a node call was still running");

        await shutdownTimeout.CancelAsync();
        await stop;
        var errors = log.Entries.Where(e => e.Level == LogLevel.Error).Select(e => e.Message).ToArray();
        errors.ShouldHaveSingleItem().ShouldContain("node 'B' of graph checks:1-t (execution e1, started by alice)");
        errors[0].ShouldContain("decision is lost");
    }

    [Fact]
    public async Task The_stop_ends_once_the_last_node_call_has_ended_and_logs_nothing()
    {
        var log = new LogCapture();
        using var loggers = new LoggerFactory([log]);
        var calls = new RunningNodeCalls(loggers.CreateLogger<RunningNodeCalls>());
        var call = new TaskCompletionSource<JsonObject>();
        calls.Add(call.Task, "A", null);

        var stop = calls.StopAsync(TestContext.Current.CancellationToken);
        stop.IsCompleted.ShouldBeFalse();
        call.SetException(new InvalidOperationException("its own failure, recorded by its call"));
        await stop.WaitAsync(TimeSpan.FromSeconds(10), TestContext.Current.CancellationToken);

        calls.Count.ShouldBe(0);
        log.Entries.ShouldBeEmpty();
    }
}
