using System.Net;
using System.Text.Json.Nodes;
using PolicyGrid.Cli.Jobs;
using Shouldly;

namespace PolicyGrid.Jobs.Tests;

/// <summary>
/// The Kubernetes runner delivering its outcome to its node: a node that is away for minutes is waited for until shortly
/// before the pod's deadline (it used to give up after 6 posts, about a minute, and a post that timed out was not tried
/// again at all), and an answer that will never change stops it at once. The pauses run on a clock that jumps.
/// </summary>
public sealed class JobResultDeliveryTests
{
    private static readonly DateTimeOffset Start = new(2026, 3, 1, 12, 0, 0, TimeSpan.Zero);
    private static readonly Uri Url = new("http://node.test/jobs/j-1/result");
    private readonly JumpingClock clock = new(Start);
    private readonly List<string> said = [];

    private JobResultDelivery Delivery(NodeAnswers node) => new(node, clock, said.Add);

    private static JsonObject Outcome => new() { ["status"] = "succeeded", ["result"] = new JsonObject { ["ok"] = true }, ["error"] = "" };

    [Fact]
    public async Task A_node_away_for_ten_minutes_gets_the_result_when_it_is_back()
    {
        // Down: refused connections, then a proxy's 503s, then posts that time out, for ten minutes in all.
        var node = new NodeAnswers(clock, (request, at) => (at - Start).TotalMinutes switch
        {
            < 3 => throw new HttpRequestException("Connection refused (node.test:80)"),
            < 6 => new HttpResponseMessage(HttpStatusCode.ServiceUnavailable),
            < 10 => clock.TimesOut(),
            _ => new HttpResponseMessage(HttpStatusCode.OK),
        });

        (await Delivery(node).DeliverAsync(Url, "tok", Outcome, Start.AddHours(1), CancellationToken.None)).ShouldBeTrue();

        node.Posts.Count.ShouldBeGreaterThan(6);
        (clock.GetUtcNow() - Start).ShouldBeGreaterThanOrEqualTo(TimeSpan.FromMinutes(10));
        node.Posts.ShouldAllBe(p => p.Authorization == "Bearer tok");
        node.Posts[^1].Body!["status"]!.GetValue<string>().ShouldBe("succeeded");
        // Backoff doubles from 1 s and is held at 30 s: a node that is back is found within half a minute.
        node.Pauses.Take(6).ShouldBe([1, 2, 4, 8, 16, 30]);
        node.Pauses.ShouldAllBe(p => p <= 30);
        said[^1].ShouldContain("delivered at attempt");
    }

    [Theory]
    [InlineData(HttpStatusCode.Unauthorized)]
    [InlineData(HttpStatusCode.Forbidden)]
    [InlineData(HttpStatusCode.NotFound)]
    [InlineData(HttpStatusCode.Conflict)]
    [InlineData(HttpStatusCode.BadRequest)]
    public async Task An_answer_that_will_not_change_stops_at_once(HttpStatusCode status)
    {
        var node = new NodeAnswers(clock, (_, _) => new HttpResponseMessage(status)
            { Content = new StringContent("""{"error":{"code":"unauthorized","message":"the result token for job 'j-1' is missing or wrong"}}""") });

        (await Delivery(node).DeliverAsync(Url, "tok", Outcome, Start.AddHours(1), CancellationToken.None)).ShouldBeFalse();

        node.Posts.Count.ShouldBe(1);
        said.Single().ShouldContain($"refused ({(int)status}: ");
        said.Single().ShouldContain("missing or wrong");
    }

    [Theory]
    [InlineData(HttpStatusCode.TooManyRequests)]
    [InlineData(HttpStatusCode.RequestTimeout)]
    [InlineData(HttpStatusCode.BadGateway)]
    public async Task A_passing_refusal_is_tried_again(HttpStatusCode status)
    {
        var posts = 0;
        var node = new NodeAnswers(clock, (_, _) => new HttpResponseMessage(++posts <= 2 ? status : HttpStatusCode.OK));

        (await Delivery(node).DeliverAsync(Url, "tok", Outcome, Start.AddHours(1), CancellationToken.None)).ShouldBeTrue();

        node.Posts.Count.ShouldBe(3);
    }

    [Fact]
    public async Task A_node_that_never_comes_back_is_given_up_shortly_before_the_pods_deadline()
    {
        var deadline = Start.AddMinutes(20);
        var node = new NodeAnswers(clock, (_, _) => new HttpResponseMessage(HttpStatusCode.ServiceUnavailable));

        (await Delivery(node).DeliverAsync(Url, "tok", Outcome, deadline, CancellationToken.None)).ShouldBeFalse();

        var gaveUpAt = clock.GetUtcNow();
        gaveUpAt.ShouldBeLessThanOrEqualTo(deadline - JobResultDelivery.DeadlineMargin);
        gaveUpAt.ShouldBeGreaterThan(deadline - JobResultDelivery.DeadlineMargin - JobResultDelivery.LongestPause);
        said[^1].ShouldContain("could not be delivered");
        said[^1].ShouldContain("before the job's deadline");
        said[^1].ShouldContain("503");
    }

    /// <summary>A node answering each post as <paramref name="answer"/> says for the clock's time; it records the posts.</summary>
    private sealed class NodeAnswers(JumpingClock clock, Func<HttpRequestMessage, DateTimeOffset, HttpResponseMessage> answer) : HttpMessageHandler
    {
        public List<(string? Authorization, JsonNode? Body)> Posts { get; } = [];
        public List<double> Pauses => clock.Pauses;

        protected override async Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
        {
            Posts.Add((request.Headers.Authorization?.ToString(), JsonNode.Parse(await request.Content!.ReadAsStringAsync(cancellationToken))));
            return answer(request, clock.GetUtcNow());
        }
    }

    /// <summary>A clock whose timers fire at once, moving the time on by their due time (the pauses between posts).</summary>
    private sealed class JumpingClock(DateTimeOffset start) : TimeProvider
    {
        private DateTimeOffset now = start;
        public List<double> Pauses { get; } = [];

        /// <summary>A post that gets no answer: it takes the whole attempt, and the client gives up on it.</summary>
        public HttpResponseMessage TimesOut()
        {
            now += JobResultDelivery.AttemptTimeout;
            throw new TaskCanceledException("The request was canceled due to the configured HttpClient.Timeout", new TimeoutException());
        }

        public override DateTimeOffset GetUtcNow() => now;

        public override ITimer CreateTimer(TimerCallback callback, object? state, TimeSpan dueTime, TimeSpan period)
        {
            if (dueTime != Timeout.InfiniteTimeSpan)
            {
                Pauses.Add(dueTime.TotalSeconds);
                now += dueTime;
                callback(state);
            }
            return new Fired();
        }

        private sealed class Fired : ITimer
        {
            public bool Change(TimeSpan dueTime, TimeSpan period) => false;
            public void Dispose() { }
            public ValueTask DisposeAsync() => ValueTask.CompletedTask;
        }
    }
}
