using PolicyGrid.Core.Ports;
using Shouldly;

namespace PolicyGrid.Core.Tests;

public sealed class CallBudgetTests
{
    private sealed class Clock : TimeProvider
    {
        public long Now;
        public override long TimestampFrequency => TimeSpan.TicksPerSecond;
        public override long GetTimestamp() => Now;
    }

    [Fact]
    public void A_call_given_up_a_moment_before_its_budget_ends_is_not_told_it_waited_past_it()
    {
        // The pool's wait for a worker ends on a timer, which fires up to a couple of ms before the high-resolution clock
        // the budget reads says the budget is spent: the 504 said "it waited 998 ms for its turn, past the 1000 ms its
        // caller waits", contradicting itself.
        var clock = new Clock();
        var budget = new CallBudget(TimeSpan.FromMilliseconds(1000), "X-PolicyGrid-Timeout-Ms: 1000", clock);
        clock.Now = TimeSpan.FromMilliseconds(998.4).Ticks;

        var error = budget.RanOut("call of policy p:1.0-beta");

        error.Status.ShouldBe(504);
        error.Message.ShouldBe("call of policy p:1.0-beta was not started: it waited 1000 ms for its turn, past the 1000 ms its caller waits "
            + "(X-PolicyGrid-Timeout-Ms: 1000), so it has no effect");
    }

    [Fact]
    public void A_call_that_waited_past_its_budget_is_told_how_long_it_waited()
    {
        var clock = new Clock();
        var budget = new CallBudget(TimeSpan.FromMilliseconds(1000), "X-PolicyGrid-Timeout-Ms: 1000", clock);
        clock.Now = TimeSpan.FromMilliseconds(1250.7).Ticks;

        Should.Throw<Errors.PolicyGridException>(() => budget.EnsureLeftToStart("call of policy p:1.0-beta"))
            .Message.ShouldContain("it waited 1250 ms for its turn, past the 1000 ms its caller waits");
    }
}
