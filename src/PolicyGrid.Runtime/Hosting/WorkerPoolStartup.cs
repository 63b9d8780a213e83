using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace PolicyGrid.Runtime.Hosting;

/// <summary>Starts the workers with the server, so the first policy call does not pay for them; stops them with it.</summary>
internal sealed class WorkerPoolStartup(PythonWorkerPool pool, ILogger<WorkerPoolStartup> logger) : IHostedService
{
    public async Task StartAsync(CancellationToken cancellationToken)
    {
        try
        {
            await pool.StartAsync(cancellationToken);
        }
        catch (Exception e) when (!cancellationToken.IsCancellationRequested)
        {
            // A slow or broken interpreter must not take the server down: it still serves documents,
            // and the first policy call starts the pool again (answering 503 with the reason if it still cannot).
            logger.LogError("policy workers could not start yet: {Reason}", e.Message);
        }
    }

    public Task StopAsync(CancellationToken cancellationToken) => pool.DisposeAsync().AsTask();
}
