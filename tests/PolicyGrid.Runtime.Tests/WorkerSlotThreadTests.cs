using System.Text;
using Microsoft.Extensions.Logging.Abstractions;
using PolicyGrid.Core.Errors;
using PolicyGrid.Runtime.Hosting;
using Shouldly;

namespace PolicyGrid.Runtime.Tests;

/// <summary>
/// A slot's drainer blocks on its worker's pipe, so it runs on a thread of the slot's own rather than
/// the thread pool's, and that thread does not outlive the slot.
/// </summary>
public sealed class WorkerSlotThreadTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static WorkerRequest Request() =>
        new(Encoding.UTF8.GetBytes("\0\0\0\u0002{}"), "slot-thread:1.0", TimeSpan.FromSeconds(5), CancellationToken.None);

    [Fact]
    public async Task The_drainer_is_a_thread_of_the_slot_and_ends_when_the_slot_stops()
    {
        var options = PoolFixture.TestOptions(workers: 1);
        Directory.CreateDirectory(options.WorkDirectory);
        // An interpreter that does not exist: every batch fails at once, which is all this test needs of a worker.
        var slot = new WorkerSlot(0, new WorkerLaunch("/nonexistent/python3", options.WorkDirectory, options, DropPrivileges: false), NullLogger.Instance, running: null);

        var first = Request();
        slot.Submit(first);
        (await Should.ThrowAsync<PolicyGridException>(first.Reply.WaitAsync(TimeSpan.FromSeconds(30), Ct))).Status.ShouldBe(503);
        var drainer = slot.DrainerThread.ShouldNotBeNull("the slot's drainer thread waits for the next request");
        drainer.IsThreadPoolThread.ShouldBeFalse();
        drainer.IsBackground.ShouldBeTrue("a drainer must never keep the process alive");

        // The same thread serves the next request.
        var second = Request();
        slot.Submit(second);
        await Should.ThrowAsync<PolicyGridException>(second.Reply.WaitAsync(TimeSpan.FromSeconds(30), Ct));
        slot.DrainerThread.ShouldBeSameAs(drainer);

        await slot.StopAsync();
        drainer.Join(TimeSpan.FromSeconds(10)).ShouldBeTrue("the drainer thread ends when its slot stops");
        slot.DrainerThread.ShouldBeNull();
    }
}
