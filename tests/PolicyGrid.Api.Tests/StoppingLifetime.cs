using Microsoft.Extensions.Hosting;

namespace PolicyGrid.Api.Tests;

/// <summary>A host's lifetime the test stops: the server's stop as its calls see it (<c>StopGrace</c>), without stopping the test's server.</summary>
internal sealed class StoppingLifetime : IHostApplicationLifetime
{
    public readonly CancellationTokenSource Stopping = new();
    public CancellationToken ApplicationStarted => CancellationToken.None;
    public CancellationToken ApplicationStopping => Stopping.Token;
    public CancellationToken ApplicationStopped => CancellationToken.None;
    public void StopApplication() => Stopping.Cancel();
}
