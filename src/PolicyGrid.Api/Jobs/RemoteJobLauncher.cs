using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json.Nodes;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Logging;
using PolicyGrid.Api.Executors;
using PolicyGrid.Core.Documents;
using PolicyGrid.Core.Errors;
using PolicyGrid.Core.Ports;
using PolicyGrid.Runtime.Transports;

namespace PolicyGrid.Api.Jobs;

/// <summary>
/// <c>http(s)://</c> executors: the registry forwards the job to the node's <c>POST /create_job</c>
/// and follows it with long-polls of <c>GET /jobs/{id}?wait=</c>. The node keeps the job's record and
/// result in its own store, so a registry restart loses nothing: it re-attaches and asks again.
/// </summary>
public sealed class RemoteJobTransport(IHttpClientFactory clients, IConfiguration configuration, ILoggerFactory loggers) : IJobTransport
{
    public const string HttpClientName = "policygrid-remote-jobs";

    public bool CanHandle(Uri executorHostUri) => executorHostUri.Scheme is "http" or "https";

    public IJobLauncher For(Uri executorHostUri) =>
        new RemoteJobLauncher(clients.CreateClient(HttpClientName), executorHostUri, NodeToken(configuration, executorHostUri), loggers.CreateLogger<RemoteJobLauncher>());

    /// <summary>The bearer token for the node at <paramref name="executorHostUri"/> (RemoteExecutors:Token, if the node is in its TokenNodes).</summary>
    internal static string? NodeToken(IConfiguration configuration, Uri executorHostUri) =>
        PolicyGrid.Runtime.RemoteExecutorOptions.From(configuration).TokenFor(executorHostUri);
}

public sealed class RemoteJobLauncher(HttpClient http, Uri node, string? token, ILogger<RemoteJobLauncher> logger) : IJobLauncher
{
    private static readonly TimeSpan PollWait = TimeSpan.FromSeconds(60);

    // What the log says while the node is down: once per executor through the outages every kind of call shares, or (for a
    // launcher not told whose it is) once per job and attempt.
    private ExecutorOutages? outages;
    private string executorId = "";

    private const string WhileDown = "; the jobs followed on it are asked after again (backing off to every 30 s) until it answers";

    /// <summary>This launcher, reporting its node's outages as <paramref name="executor"/>'s through <paramref name="shared"/>.</summary>
    public RemoteJobLauncher ReportingAs(string executor, ExecutorOutages shared) =>
        new(http, node, token, logger) { outages = shared, executorId = executor };

    private void NodeDown(string jobId, string reason)
    {
        if (outages is null)
        {
            logger.LogWarning("job {JobId}: executor node {Node} {Reason}; asking again", jobId, node.Authority, reason);
            return;
        }
        outages.Down(executorId, $"executor node {node.Authority} {reason}", WhileDown);
        logger.LogDebug("job {JobId}: executor node {Node} {Reason}; asking again", jobId, node.Authority, reason);
    }

    public async Task<JobOutcome> RunAsync(JobLaunch launch, CancellationToken ct)
    {
        var body = new JsonObject
        {
            ["job_id"] = launch.JobId,
            ["policy_rule_uri"] = launch.PolicyRuleUri,
            ["policy_rule_parameters"] = launch.Parameters.DeepClone(),
            ["node_selector"] = new JsonObject(launch.NodeSelector.Select(p => KeyValuePair.Create(p.Key, (JsonNode?)p.Value))),
            ["inputs"] = launch.Inputs.DeepClone(),
            ["timeout_seconds"] = launch.Timeout.TotalSeconds,
        };
        using (var request = Request(HttpMethod.Post, "create_job"))
        {
            request.Content = JsonContent.Create(body);
            try
            {
                using var response = await http.SendAsync(request, ct);
                outages?.Up(executorId);
                if (!response.IsSuccessStatusCode)
                {
                    var (status, message) = ((int)response.StatusCode, await MessageAsync(response, ct));
                    return JobOutcome.Failed(NodeAnswers.IsWrongAddress(status, message)
                        ? NodeAnswers.WrongAddress(node, $"{status} {message}")
                        : status == 404 && message.Contains($"'{launch.PolicyRuleUri}'", StringComparison.Ordinal)
                            // The registry holds the policy (the submission was checked against it); the node looks policies up in
                            // its own registry. Said as Type 2 says it (RemoteExecutorClient), not as a bare "no policy" the
                            // caller took for this server's registry lacking one it plainly holds.
                            ? $"policy '{launch.PolicyRuleUri}' is registered on this server but not in the registry of executor node {node.Authority}, "
                                + $"which runs jobs with policies from its own registry: register it on the node too (the node answered: {status} {message})"
                            : $"executor node {node.Authority} refused the job: {status} {message}");
                }
            }
            catch (HttpRequestException e)
            {
                outages?.Down(executorId, $"executor node {node.Authority} could not be reached to start a job ({e.Message})", "; jobs sent to it fail");
                return JobOutcome.Failed($"executor node {node.Authority} could not be reached to start the job: {e.Message}");
            }
        }
        return await FollowAsync(launch.JobId, ct);
    }

    public Task<JobOutcome> ReattachAsync(string jobId, CancellationToken ct) => FollowAsync(jobId, ct);

    public async Task CancelAsync(string jobId, CancellationToken ct)
    {
        using var request = Request(HttpMethod.Delete, $"jobs/{Uri.EscapeDataString(jobId)}");
        try
        {
            using var response = await http.SendAsync(request, ct);
            if (!response.IsSuccessStatusCode && response.StatusCode != HttpStatusCode.NotFound)
                throw Problems.BackendError($"executor node {node.Authority} did not cancel job '{jobId}': {(int)response.StatusCode} {await MessageAsync(response, ct)}");
        }
        catch (HttpRequestException e)
        {
            throw Problems.BackendUnavailable($"executor node {node.Authority} could not be reached to cancel job '{jobId}': {e.Message}");
        }
    }

    private async Task<JobOutcome> FollowAsync(string jobId, CancellationToken ct)
    {
        var backoff = TimeSpan.FromSeconds(1);
        while (true)
        {
            ct.ThrowIfCancellationRequested();
            try
            {
                using var request = Request(HttpMethod.Get, $"jobs/{Uri.EscapeDataString(jobId)}?wait={PollWait.TotalSeconds}");
                using var response = await http.SendAsync(request, ct);
                if (response.StatusCode == HttpStatusCode.NotFound)
                    return JobOutcome.Failed($"executor node {node.Authority} no longer knows job '{jobId}'");
                if (response.IsSuccessStatusCode)
                {
                    var data = (await response.Content.ReadFromJsonAsync<JsonObject>(ct))?["data"] as JsonObject;
                    var status = data?["status"]?.GetValue<string>() ?? "";
                    var error = data?["error"]?.GetValue<string>() ?? "";
                    switch (status)
                    {
                        case JobStatus.Succeeded: return new JobOutcome(JobEnd.Succeeded, "", data!["result"]?.DeepClone());
                        case JobStatus.Failed: return JobOutcome.Failed(error);
                        case JobStatus.TimedOut: return JobOutcome.TimedOut(error);
                        case JobStatus.Cancelled: return JobOutcome.Cancelled(error);
                    }
                    outages?.Up(executorId);
                    backoff = TimeSpan.FromSeconds(1);
                    continue; // still pending or running: ask again (the node holds each ask up to PollWait)
                }
                NodeDown(jobId, $"answered {(int)response.StatusCode}");
            }
            catch (HttpRequestException e)
            {
                NodeDown(jobId, $"unreachable ({e.Message})");
            }
            await Task.Delay(backoff, ct);
            backoff = TimeSpan.FromTicks(Math.Min(backoff.Ticks * 2, TimeSpan.FromSeconds(30).Ticks));
        }
    }

    private HttpRequestMessage Request(HttpMethod method, string path)
    {
        var request = new HttpRequestMessage(method, new Uri(new Uri(node.ToString().TrimEnd('/') + "/"), path));
        if (!string.IsNullOrEmpty(token)) request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", token);
        return request;
    }

    private static async Task<string> MessageAsync(HttpResponseMessage response, CancellationToken ct)
    {
        try
        {
            var body = await response.Content.ReadFromJsonAsync<JsonObject>(ct);
            if (body?["message"]?.GetValue<string>() is { Length: > 0 } message) return message;
        }
        catch (System.Text.Json.JsonException)
        {
        }
        return response.ReasonPhrase ?? "";
    }
}
