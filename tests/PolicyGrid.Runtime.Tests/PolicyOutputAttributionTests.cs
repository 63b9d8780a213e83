using System.Text.Json.Nodes;
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
        var options = PoolFixture.TestOptions(workers: 1);
        options.IsolatePolicies = false; // one worker runs both policies
        await using var pool = new PythonWorkerPool(options, logs.CreateLogger<PythonWorkerPool>());
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
}
