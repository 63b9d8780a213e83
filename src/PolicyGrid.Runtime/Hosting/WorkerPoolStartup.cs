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
        catch (InvalidOperationException e)
        {
            // The server still serves documents; policy calls will answer 503 with this reason.
            logger.LogError("policy workers could not start: {Reason}", e.Message);
        }
    }

    public Task StopAsync(CancellationToken cancellationToken) => pool.DisposeAsync().AsTask();
}
