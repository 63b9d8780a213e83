using System.Text.Json.Nodes;
using PolicyGrid.Core.Ports;
using Shouldly;

namespace PolicyGrid.Runtime.Tests;

/// <summary>
/// An executor whose pool has one worker, which a slow call (<see cref="Hold"/>) occupies until the test releases it, so
/// that the calls the test makes next wait in the pool behind it. The set-up shared by the tests of what becomes of a
/// call while it waits for a busy worker (<see cref="CallBudgetInPoolTests"/>, <see cref="QueuedCallRetiredTests"/>).
/// </summary>
/// <remarks>
/// The policy's <c>eval</c> holds while <c>input_data["hold"]</c> names a directory: it writes <c>running</c> there, then
/// waits until <c>release</c> appears in it.
/// </remarks>
public sealed class OneWorkerExecutor : IAsyncDisposable
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    // One worker, so the slow call holds the only one; markers under the host's /tmp. The policy's calls count as short
    // (as a fast policy's do): a call that finds the worker idle is then sent and answered on its caller's thread
    // (WorkerSlot.Submit), so the slow call must be made from a thread of its own (see Hold). The default limit (500 µs)
    // made that depend on how fast an earlier call happened to be.
    public ExecutorHarness Harness { get; } = new(o =>
    {
        o.Pool.Workers = 1;
        o.Pool.PrivateTemp = false;
        o.Pool.PackCallsUnder = TimeSpan.FromSeconds(10);
    });

    private readonly List<string> directories = [];

    /// <summary>Starts the pool and adds the policy; answers its URI.</summary>
    public async Task<string> StartAsync(string name, string source)
    {
        await Harness.Pool.StartAsync(Ct);
        return await Harness.AddSourceAsync(name, source);
    }

    /// <summary>A directory the worker can write its markers in (it may run as an unprivileged user); removed at the end.</summary>
    public string NewDirectory(string prefix)
    {
        var dir = Directory.CreateTempSubdirectory(prefix).FullName;
        if (!OperatingSystem.IsWindows()) File.SetUnixFileMode(dir, (UnixFileMode)0b111_111_111);
        directories.Add(dir);
        return dir;
    }

    /// <summary>
    /// A slow call on its own context key, running (or queued) until <see cref="Release"/>; its deadline is far off. Made
    /// from a thread of its own, as each of a server's requests is: when it finds the worker idle, the pool runs it on the
    /// calling thread, which it holds until the call answers; made from the test's thread, the test could not go on to
    /// release it, and the call ran to its deadline (the worker was free for the calls the test meant to queue behind it).
    /// </summary>
    public Task<PolicyResult> Hold(string uri, string dir, CallerIdentity caller) =>
        Task.Run(() => Harness.Executor.ExecuteAsync(new ExecutionRequest(uri, new JsonObject { ["hold"] = dir }, ContextKey: "hold-" + Path.GetFileName(dir),
            TimeoutSeconds: 120), caller, Ct), Ct);

    /// <summary>Ends the slow call holding on <paramref name="dir"/>.</summary>
    public static void Release(string dir) => File.WriteAllText(Path.Combine(dir, "release"), "go");

    /// <summary>The pool's state and the log, for a failed wait.</summary>
    public string Diag(Task t) => $"[status {Harness.Pool.Status} live {Harness.Pool.LiveWorkers().Count} task {t.Status} {t.Exception?.InnerException?.Message} logs: {string.Join(" | ", Harness.Logs.Entries.Select(e => e.Message))}]";

    public static Task Until(Func<bool> condition, string what) => Until(condition, () => what);

    public static async Task Until(Func<bool> condition, Func<string> what)
    {
        var until = DateTime.UtcNow.AddSeconds(30);
        while (!condition() && DateTime.UtcNow < until) await Task.Delay(5, Ct);
        condition().ShouldBeTrue(what());
    }

    public async ValueTask DisposeAsync()
    {
        await Harness.DisposeAsync();
        foreach (var dir in directories) Directory.Delete(dir, recursive: true);
    }
}
