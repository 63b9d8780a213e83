using System.Text.Json.Nodes;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using PolicyGrid.Core.Documents;
using PolicyGrid.Core.Ports;
using PolicyGrid.Core.Querying;
using PolicyGrid.Runtime;

namespace PolicyGrid.Api.Jobs;

/// <summary>
/// Keeps the records of ended jobs (<see cref="Collections.Jobs"/>) bounded: at start and every
/// <see cref="JobsOptions.PruneInterval"/> it removes those that ended more than <see cref="JobsOptions.KeepEndedJobsFor"/>
/// ago and the ones that ended first beyond <see cref="JobsOptions.MaxEndedJobs"/>, each with what this server's launcher
/// keeps of it (a local job's log). Pending and running jobs are never removed: only a record already ended matches.
/// Before, every job's record and log stayed for good (a 22-minute soak left 326 records and 325 logs).
/// </summary>
public sealed class JobRetention(IDocumentStore store, JobResultTokens tokens, IServiceProvider services, IOptions<JobsOptions> options,
    TimeProvider clock, ILogger<JobRetention> logger) : PeriodicPruning(clock, logger)
{
    private static readonly FilterNode Ended = Filter(new JsonObject
    {
        ["status"] = new JsonObject { ["$in"] = new JsonArray(JobStatus.Succeeded, JobStatus.Failed, JobStatus.TimedOut, JobStatus.Cancelled) },
    });

    protected override TimeSpan Interval => options.Value.PruneInterval;

    protected override string What => "job";

    /// <summary>Removes the ended jobs past the limits now; answers how many records went.</summary>
    public override async Task<int> PruneAsync(CancellationToken ct)
    {
        var o = options.Value;
        var removed = 0;
        if (o.KeepEndedJobsFor > TimeSpan.Zero && Timestamps.Cutoff(Clock.GetUtcNow(), o.KeepEndedJobsFor) is { } before)
        {
            // Oldest end first, as a range from the start: a store that sorts for us (SQLite; the Dapr query API, which
            // has no range operator but does sort) answers only the too-old jobs and one page more, not every ended job.
            // Each page is deleted before the next is read, so the next query starts again at the oldest left.
            var cutoff = Timestamps.Format(before);
            while (true)
            {
                var page = await PageAsync(Ended, [new SortKey("finished_at", SortDirection.Asc)], 0, ct);
                var tooOld = page.TakeWhile(d => string.CompareOrdinal(FinishedAt(d), cutoff) < 0).ToList();
                removed += await RemoveAsync([.. tooOld.Select(d => d.Id)], ct);
                if (tooOld.Count < DocumentQuery.MaxLimit) break;
            }
        }
        if (o.MaxEndedJobs > 0)
        {
            // The newest MaxEndedJobs by their end are skipped; whatever comes after them goes.
            var newestFirst = new SortKey("finished_at", SortDirection.Desc);
            if (store is IDocumentRankStore ranks)
            {
                // In one pass: the Dapr store pays for every job before a page found by position, so page after page it
                // read the newest MaxEndedJobs again (with a key index, every job), and once more to find nothing left.
                removed += await RemoveAsync(await ranks.IdsBeyondAsync(Collections.Jobs, Ended, newestFirst, o.MaxEndedJobs, ct), ct);
            }
            else
            {
                while (await PageAsync(Ended, [newestFirst], o.MaxEndedJobs, ct) is { Count: > 0 } page)
                    removed += await RemoveAsync([.. page.Select(d => d.Id)], ct);
            }
        }
        if (removed > 0) logger.LogInformation("job retention removed {Count} ended jobs", removed);
        return removed;
    }

    private Task<IReadOnlyList<StoredDocument>> PageAsync(FilterNode filter, IReadOnlyList<SortKey> sort, int skip, CancellationToken ct) =>
        store.QueryAsync(Collections.Jobs, new DocumentQuery(filter, sort, skip, DocumentQuery.MaxLimit), ct);

    private async Task<int> RemoveAsync(IReadOnlyList<string> ids, CancellationToken ct)
    {
        var launcher = services.GetService<IJobLauncher>(); // this server's own: the only one that keeps anything here
        var removed = 0;
        // One deleted meanwhile (another replica's retention) is not counted; its log went with it there.
        if (store is IDocumentBulkDeleteStore bulk)
        {
            // The Dapr store with a key index rewrote the whole id list for every job deleted one at a time. A page at a
            // time, each page's jobs forgotten before the next is deleted: a store failure part way leaves at most the
            // logs of one page's deleted jobs behind.
            foreach (var page in ids.Chunk(DocumentQuery.MaxLimit))
            {
                var deleted = await bulk.DeleteManyAsync(Collections.Jobs, page, ct);
                foreach (var id in deleted) await ForgetAsync(id, launcher, ct);
                removed += deleted.Count;
            }
            return removed;
        }
        foreach (var id in ids)
        {
            if (await store.DeleteAsync(Collections.Jobs, id, null, ct) is null) continue;
            removed++;
            await ForgetAsync(id, launcher, ct);
        }
        return removed;
    }

    private async Task ForgetAsync(string id, IJobLauncher? launcher, CancellationToken ct)
    {
        await tokens.ForgetAsync(id, ct); // gone already once the job ended, unless that end's clean-up was cut short
        if (launcher is not null) await launcher.ForgetAsync(id, ct);
    }

    /// <summary>What a GET of a job that is not there may add: that ended jobs are removed, and when.</summary>
    public static string Explain(JobsOptions o)
    {
        var limits = new List<string>();
        if (o.KeepEndedJobsFor > TimeSpan.Zero) limits.Add($"ended more than {Describe(o.KeepEndedJobsFor)} ago");
        if (o.MaxEndedJobs > 0) limits.Add($"is not among the {o.MaxEndedJobs} that ended last");
        return limits.Count == 0 ? ""
            : $": it was never submitted here, or it {string.Join(" or ", limits)} and was removed by job retention ({JobsOptions.Section}:KeepEndedJobsFor, MaxEndedJobs)";
    }

    private static string Describe(TimeSpan span) =>
        span.TotalDays >= 1 && span.Ticks % TimeSpan.TicksPerDay == 0 ? Plural((long)span.TotalDays, "day")
        : span.TotalHours >= 1 && span.Ticks % TimeSpan.TicksPerHour == 0 ? Plural((long)span.TotalHours, "hour")
        : span.TotalMinutes >= 1 && span.Ticks % TimeSpan.TicksPerMinute == 0 ? Plural((long)span.TotalMinutes, "minute")
        : span.TotalSeconds >= 1 && span.Ticks % TimeSpan.TicksPerSecond == 0 ? Plural((long)span.TotalSeconds, "second")
        : span.ToString("c", System.Globalization.CultureInfo.InvariantCulture);

    private static string Plural(long n, string unit) => n == 1 ? $"1 {unit}" : $"{n} {unit}s";

    private static string FinishedAt(StoredDocument job) =>
        job.Body["finished_at"] is JsonValue v && v.TryGetValue<string>(out var text) ? text : "";

    private static FilterNode Filter(JsonObject filter) => FilterParser.Parse(filter);
}
