using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json.Nodes;

namespace PolicyGrid.Cli.Jobs;

/// <summary>
/// Posts a Kubernetes runner's outcome to its node (<c>POST /jobs/{id}/result</c>) until the node has it or the job's
/// deadline is near. The policy already ran: an outcome that is not delivered turns a run that succeeded into a failed
/// job, so a node that is away (restarting, rescheduled, its Service without endpoints) is waited for: a timeout, a
/// connection error, a 5xx, a 408 or a 429 are tried again, after 1 s and then twice as long each time up to
/// <see cref="LongestPause"/>. An answer that will never change (a wrong token, an unknown job, a refused body) stops at
/// once. A post the node recorded whose answer was lost is answered 200 again (the first end recorded stands).
/// </summary>
public sealed class JobResultDelivery(HttpMessageHandler handler, TimeProvider clock, Action<string> tell)
{
    /// <summary>The longest wait between two posts.</summary>
    public static readonly TimeSpan LongestPause = TimeSpan.FromSeconds(30);

    /// <summary>The longest one post may take before it counts as failed and is tried again.</summary>
    public static readonly TimeSpan AttemptTimeout = TimeSpan.FromSeconds(30);

    /// <summary>
    /// How long before the deadline the runner stops trying: Kubernetes removes a pod stopped at its Job's deadline, and
    /// with it the log saying why the outcome was not delivered; a runner that gives up first leaves its pod, exit code
    /// and log for the node to read into the job's error.
    /// </summary>
    public static readonly TimeSpan DeadlineMargin = TimeSpan.FromSeconds(10);

    /// <summary>Posts <paramref name="outcome"/>; true once the node answered 2xx, false when it refused it or the deadline came first.</summary>
    public async Task<bool> DeliverAsync(Uri url, string token, JsonObject outcome, DateTimeOffset deadline, CancellationToken ct)
    {
        using var http = new HttpClient(handler, disposeHandler: false) { Timeout = Timeout.InfiniteTimeSpan };
        var giveUpAt = deadline - DeadlineMargin;
        var started = clock.GetUtcNow();
        var pause = TimeSpan.FromSeconds(1);
        for (var attempt = 1; ; attempt++)
        {
            var left = giveUpAt - clock.GetUtcNow();
            string failure;
            using (var attemptTimeout = CancellationTokenSource.CreateLinkedTokenSource(ct))
            {
                attemptTimeout.CancelAfter(left < AttemptTimeout && left > TimeSpan.Zero ? left : AttemptTimeout);
                try
                {
                    using var request = new HttpRequestMessage(HttpMethod.Post, url) { Content = JsonContent.Create(outcome) };
                    request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", token);
                    using var response = await http.SendAsync(request, attemptTimeout.Token);
                    if (response.IsSuccessStatusCode)
                    {
                        if (attempt > 1) tell($"policygrid job-run: the result was delivered at attempt {attempt}");
                        return true;
                    }
                    var answer = await Answer(response, attemptTimeout.Token);
                    if (!WorthRetrying(response.StatusCode))
                    {
                        tell($"policygrid job-run: the result was refused ({(int)response.StatusCode}{answer}); not trying again");
                        return false;
                    }
                    failure = $"{(int)response.StatusCode}{answer}";
                }
                catch (OperationCanceledException) when (!ct.IsCancellationRequested)
                {
                    failure = $"no answer within {Seconds(left < AttemptTimeout && left > TimeSpan.Zero ? left : AttemptTimeout)}";
                }
                catch (HttpRequestException e)
                {
                    failure = e.Message;
                }
            }
            var now = clock.GetUtcNow();
            if (now + pause >= giveUpAt)
            {
                tell($"policygrid job-run: the result could not be delivered to {url.GetLeftPart(UriPartial.Path)} before the job's deadline "
                    + $"({attempt} attempts over {Seconds(now - started)}; the last: {failure}); the outcome it held: {outcome["status"]}");
                return false;
            }
            tell($"policygrid job-run: posting the result failed (attempt {attempt}: {failure}); trying again in {Seconds(pause)}");
            await Task.Delay(pause, clock, ct);
            pause = pause * 2 < LongestPause ? pause * 2 : LongestPause;
        }
    }

    // A 5xx, a timeout (408) or a rate limit (429) may pass; any other 4xx (a wrong token, an unknown job, a refused body)
    // is the same answer next time.
    private static bool WorthRetrying(HttpStatusCode status) =>
        (int)status >= 500 || status is HttpStatusCode.RequestTimeout or HttpStatusCode.TooManyRequests;

    // The node's error envelope says why; a proxy's page may be long, so a bounded piece of it.
    private static async Task<string> Answer(HttpResponseMessage response, CancellationToken ct)
    {
        string text;
        try { text = (await response.Content.ReadAsStringAsync(ct)).Trim(); }
        catch (Exception e) when (e is HttpRequestException or OperationCanceledException) { return ""; }
        if (text.Length > 300) text = text[..300] + "…";
        return text.Length > 0 ? $": {text}" : "";
    }

    private static string Seconds(TimeSpan span) => span.TotalSeconds.ToString("0.#", CultureInfo.InvariantCulture) + " s";
}
