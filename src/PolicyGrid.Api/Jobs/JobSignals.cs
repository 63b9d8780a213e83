using System.Collections.Concurrent;

namespace PolicyGrid.Api.Jobs;

/// <summary>
/// Wakes long-polling readers (<c>GET /jobs/{id}?wait=</c>) when a job ends. A reader takes the
/// signal before it reads the document, so an end recorded between its read and its wait still wakes it.
/// </summary>
public sealed class JobSignals
{
    private readonly ConcurrentDictionary<string, TaskCompletionSource> waiting = new(StringComparer.Ordinal);

    public Task Ended(string jobId) =>
        waiting.GetOrAdd(jobId, _ => new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)).Task;

    public void Signal(string jobId)
    {
        if (waiting.TryRemove(jobId, out var signal)) signal.TrySetResult();
    }
}
