using System.Text.Json.Nodes;
using PolicyGrid.Core.Errors;
using PolicyGrid.Runtime.Hosting;
using Shouldly;

namespace PolicyGrid.Runtime.Tests;

/// <summary>
/// Each line a policy prints is logged under that policy's URI, also when policies share a worker and their calls
/// interleave: the pipe is read on its own thread, so the timing of reply frames cannot say whose a line is.
/// </summary>
public sealed class PolicyOutputAttributionTests
{
    private const string Talker = """
        import logging
        import sys

        class AIOSv1PolicyRule:
            def __init__(self, rule_id, settings, parameters):
                self.rule_id = rule_id
                print("init of", rule_id)

            def eval(self, parameters, input_data, context):
                n = input_data["n"]
                print("print of", self.rule_id, n)
                logging.warning("log of %s %s", self.rule_id, n)
                sys.stderr.write("partial of " + self.rule_id)  # no newline: the next policy's marker must not join it
                sys.stderr.write(" " + str(n) + "\n")
                if input_data.get("forge"):
                    print("\x1e" + "0" * 32 + " victim:1.0-test pretending")
                return {"n": n}
        """;

    [Fact]
    public async Task Lines_are_logged_under_the_policy_that_printed_them_when_calls_of_two_policies_interleave_on_one_worker()
    {
        var logs = new CapturingLoggerProvider();
        await using var pool = OneSharedWorker(logs);
        var bundle = TestBundles.FromSource(Talker);
        var calls = new List<Task<JsonObject>>();
        for (var n = 0; n < 40; n++)
        {
            var uri = n % 2 == 0 ? "alpha:1.0-test" : "beta:1.0-test";
            calls.Add(PoolFixture.EvalAsync(pool, uri, bundle, new JsonObject { ["n"] = n, ["forge"] = n == 7 }));
        }
        await Task.WhenAll(calls);
        await pool.DisposeAsync(); // drains the output pumps

        var lines = logs.Entries.Select(e => e.Message).Where(m => m.StartsWith("policy ", StringComparison.Ordinal) && m.Contains(" output: ", StringComparison.Ordinal)).ToList();
        var written = lines.Where(m => m.Contains(" of ", StringComparison.Ordinal)).ToList();
        // 40 calls × (print, log, partial line) + 2 × init.
        written.Count.ShouldBe(122, string.Join("\n", lines));
        foreach (var message in written)
        {
            // "policy <uri> output: <kind> of <uri> [n]": the URI the log names is the one the policy wrote.
            var named = message["policy ".Length..message.IndexOf(" output: ", StringComparison.Ordinal)];
            var text = message[(message.IndexOf(" output: ", StringComparison.Ordinal) + " output: ".Length)..];
            text.Split(' ')[2].ShouldBe(named, message);
        }
        // A policy cannot pass its lines off as another's: a marker without the worker's tag is ordinary output.
        lines.ShouldContain(m => m.StartsWith("policy beta:1.0-test output: ", StringComparison.Ordinal) && m.Contains("victim:1.0-test pretending", StringComparison.Ordinal),
            string.Join("\n", lines));
        lines.ShouldNotContain(m => m.StartsWith("policy victim", StringComparison.Ordinal));
    }

    // Writes one kind of output per call, chosen by input_data.mode.
    private const string Writer = """
        import os
        import sys

        class AIOSv1PolicyRule:
            def __init__(self, rule_id, settings, parameters):
                self.rule_id = rule_id

            def eval(self, parameters, input_data, context):
                mode = input_data["mode"]
                if mode == "print":
                    print("print of", self.rule_id)
                elif mode == "partial":
                    print("partial of", self.rule_id, end="")  # no newline, and nothing more in this call
                elif mode == "bytes":
                    sys.stdout.buffer.write(b"bytes of " + self.rule_id.encode() + b"\n")  # past sys.stdout's own write
                elif mode == "exit":
                    os._exit(7)  # flushes nothing: only what the host flushed after earlier calls reaches the pipe
                return {"mode": mode}
        """;

    [Fact]
    public async Task Output_a_call_leaves_in_a_buffer_is_logged_under_its_policy_even_when_the_worker_dies_in_the_next_call()
    {
        var logs = new CapturingLoggerProvider();
        await using var pool = new PythonWorkerPool(PoolFixture.TestOptions(workers: 1), logs.CreateLogger<PythonWorkerPool>());
        var bundle = TestBundles.FromSource(Writer);
        const string uri = "writer:1.0-test";
        // A partial line in sys.stdout, then, on the worker that replaces the first, a line written to
        // sys.stdout.buffer by a call that wrote nothing else: the host flushed each when its call ended.
        foreach (var leave in new[] { "partial", "bytes" })
        {
            await PoolFixture.EvalAsync(pool, uri, bundle, new JsonObject { ["mode"] = "print" });
            await PoolFixture.EvalAsync(pool, uri, bundle, new JsonObject { ["mode"] = leave });
            var crash = await Should.ThrowAsync<PolicyGridException>(() => PoolFixture.EvalAsync(pool, uri, bundle, new JsonObject { ["mode"] = "exit" }));
            crash.Code.ShouldBe("policy_crashed");
        }
        await pool.DisposeAsync(); // drains the output pumps

        var lines = OutputLines(logs);
        lines.ShouldContain($"policy {uri} output: partial of {uri}", string.Join("\n", lines));
        lines.ShouldContain($"policy {uri} output: bytes of {uri}", string.Join("\n", lines));
    }

    [Fact]
    public async Task A_partial_line_stays_with_its_policy_when_another_writes_next_and_bytes_past_sys_stdout_go_to_the_last_policy_named()
    {
        var logs = new CapturingLoggerProvider();
        await using var pool = OneSharedWorker(logs);
        var bundle = TestBundles.FromSource(Writer);
        foreach (var (uri, mode) in new[] { ("alpha:1.0-test", "partial"), ("beta:1.0-test", "print"), ("beta:1.0-test", "bytes"), ("alpha:1.0-test", "bytes") })
            await PoolFixture.EvalAsync(pool, uri, bundle, new JsonObject { ["mode"] = mode });
        await pool.DisposeAsync(); // drains the output pumps

        var lines = OutputLines(logs);
        lines.ShouldBe([
            "policy alpha:1.0-test output: partial of alpha:1.0-test",
            "policy beta:1.0-test output: print of beta:1.0-test",
            "policy beta:1.0-test output: bytes of beta:1.0-test",
            // Output that bypasses sys.stdout's own write names no one: it goes to whoever was named last.
            "policy beta:1.0-test output: bytes of alpha:1.0-test",
        ]);
    }

    // One worker runs both policies of a test.
    private static PythonWorkerPool OneSharedWorker(CapturingLoggerProvider logs)
    {
        var options = PoolFixture.TestOptions(workers: 1);
        options.IsolatePolicies = false;
        return new PythonWorkerPool(options, logs.CreateLogger<PythonWorkerPool>());
    }

    private static List<string> OutputLines(CapturingLoggerProvider logs) =>
        logs.Entries.Select(e => e.Message).Where(m => m.StartsWith("policy ", StringComparison.Ordinal) && m.Contains(" output: ", StringComparison.Ordinal)).ToList();
}
