using System.Text.Json.Nodes;
using Microsoft.Extensions.Logging;
using PolicyGrid.Core.Ports;
using PolicyGrid.Embedded.Graphs;
using Shouldly;

namespace PolicyGrid.Graphs.Tests;

public sealed class RunningNodeCallsTests
{
    private static readonly FunctionCallOrigin Run = new("alice", "checks:1-t", "e1");
    private readonly LogCapture log = new();

    private RunningNodeCalls Calls() => new(new Logger<RunningNodeCalls>(new LoggerFactory([log])));

    [Fact]
    public async Task The_stop_waits_for_the_calls_of_cancelled_runs_and_names_each_one_still_running_when_its_time_runs_out()
    {
        var calls = Calls();
        var ending = new TaskCompletionSource<JsonObject>();
        var stuck = new TaskCompletionSource<JsonObject>();
        calls.Add(ending.Task, "A", Run, new CancellationToken(canceled: true));
        calls.Add(stuck.Task, "B", Run, new CancellationToken(canceled: true));
        calls.Add(Task.FromResult(new JsonObject()), "C", Run, new CancellationToken(canceled: true)); // ended already: nothing to wait for
        calls.Count.ShouldBe(2);

        using var shutdownTimeout = new CancellationTokenSource();
        var stop = calls.StopAsync(shutdownTimeout.Token);
        ending.SetResult([]);
        calls.Count.ShouldBe(1);
        stop.IsCompleted.ShouldBeFalse("the stop went on while a node call of a cancelled run was still running");

        await shutdownTimeout.CancelAsync();
        await stop;
        var errors = log.Entries.Where(e => e.Level == LogLevel.Error).Select(e => e.Message).ToArray();
        errors.ShouldHaveSingleItem().ShouldContain("node 'B' of graph checks:1-t (execution e1, started by alice)");
        errors[0].ShouldContain("decision is lost");
    }

    [Fact]
    public async Task The_stop_ends_once_the_last_call_of_a_cancelled_run_has_ended_and_leaves_calls_of_runs_still_waiting_to_them()
    {
        var calls = Calls();
        var abandoned = new TaskCompletionSource<JsonObject>();
        var awaited = new TaskCompletionSource<JsonObject>();
        calls.Add(abandoned.Task, "A", null, new CancellationToken(canceled: true));
        calls.Add(awaited.Task, "B", null, CancellationToken.None); // its run (its request) still waits for it

        var stop = calls.StopAsync(TestContext.Current.CancellationToken);
        stop.IsCompleted.ShouldBeFalse();
        abandoned.SetException(new InvalidOperationException("its own failure, recorded by its call"));
        await stop.WaitAsync(TimeSpan.FromSeconds(10), TestContext.Current.CancellationToken);

        calls.Count.ShouldBe(1);
        log.Entries.ShouldBeEmpty();
    }
}
