using System.Text.Json.Nodes;
using PolicyGrid.Core.Ports;
using PolicyGrid.Embedded.Events;
using Shouldly;

namespace PolicyGrid.Dapr.Tests.Events;

public sealed class InProcessEventBusTests
{
    private readonly InProcessEventBus bus = new(TimeProvider.System);
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static JsonObject Decision(string correlationId) => new() { ["correlation_id"] = correlationId, ["success"] = true };

    [Fact]
    public async Task Readers_find_decisions_by_correlation_id_as_cloud_event_ready_records()
    {
        await bus.PublishAsync(Topics.Decisions, Decision("a"), Ct);
        await bus.PublishAsync(Topics.Decisions, Decision("b"), Ct);
        await bus.PublishAsync(Topics.DeadLetter, Decision("a"), Ct);

        var found = await bus.ReadAsync(Topics.Decisions, "a", TimeSpan.Zero, Ct);

        var e = found.ShouldHaveSingleItem();
        e.Topic.ShouldBe("policy-decisions");
        e.Type.ShouldBe(EventTypes.Decision);
        e.CorrelationId.ShouldBe("a");
        Guid.TryParse(e.Id, out _).ShouldBeTrue();
        (await bus.ReadAsync(Topics.Decisions, null, TimeSpan.Zero, Ct)).Count.ShouldBe(2);
    }

    [Fact]
    public async Task A_waiting_reader_wakes_when_its_decision_arrives()
    {
        var waiting = bus.ReadAsync(Topics.Decisions, "late", TimeSpan.FromSeconds(30), Ct);
        await bus.PublishAsync(Topics.Decisions, Decision("other"), Ct);
        waiting.IsCompleted.ShouldBeFalse();

        await bus.PublishAsync(Topics.Decisions, Decision("late"), Ct);

        (await waiting.WaitAsync(TimeSpan.FromSeconds(10), Ct)).ShouldHaveSingleItem().CorrelationId.ShouldBe("late");
    }

    [Fact]
    public async Task A_reader_that_waits_for_nothing_gets_nothing_at_once()
    {
        (await bus.ReadAsync(Topics.Decisions, "none", TimeSpan.Zero, Ct)).ShouldBeEmpty();
    }

    [Fact]
    public async Task Published_data_is_a_copy_the_publisher_cannot_change_afterwards()
    {
        var data = Decision("c");
        await bus.PublishAsync(Topics.Decisions, data, Ct);
        data["success"] = false;

        (await bus.ReadAsync(Topics.Decisions, "c", TimeSpan.Zero, Ct)).Single().Data["success"]!.GetValue<bool>().ShouldBeTrue();
    }

    [Fact]
    public async Task Memory_stays_bounded_to_the_most_recent_events_of_a_topic()
    {
        for (var i = 0; i < InProcessEventBus.RetainedPerTopic + 5; i++)
            await bus.PublishAsync(Topics.Decisions, Decision("n" + i), Ct);

        var all = await bus.ReadAsync(Topics.Decisions, null, TimeSpan.Zero, Ct);
        all.Count.ShouldBe(InProcessEventBus.RetainedPerTopic);
        all[0].CorrelationId.ShouldBe("n5");
    }

    [Fact]
    public async Task Subscribers_receive_what_is_published_on_their_topic_after_they_subscribe()
    {
        await bus.PublishAsync(Topics.Decisions, Decision("before"), Ct);
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        var reader = bus.Subscribe(Topics.Decisions, stop.Token);

        await bus.PublishAsync(Topics.Evaluations, Decision("elsewhere"), Ct);
        await bus.PublishAsync(Topics.Decisions, Decision("after"), Ct);

        (await reader.ReadAsync(Ct)).CorrelationId.ShouldBe("after");
        reader.TryRead(out _).ShouldBeFalse();
        stop.Cancel();
        await reader.Completion.WaitAsync(TimeSpan.FromSeconds(10), Ct);
    }
}
