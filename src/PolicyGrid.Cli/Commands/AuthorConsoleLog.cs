using Microsoft.Extensions.Logging;
using PolicyGrid.Runtime.Hosting;

namespace PolicyGrid.Cli.Commands;

/// <summary>
/// The worker pool's log as <c>policy test</c> shows it on stderr: every line the policy printed or logged (an
/// author's first debugging tool), and the pool's warnings and errors (e.g. that the worker runs on another
/// interpreter or user than configured). The pool's routine messages are left out.
/// </summary>
internal sealed class AuthorConsoleLog(TextWriter error) : ILogger<PythonWorkerPool>
{
    public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

    public bool IsEnabled(LogLevel logLevel) => logLevel >= LogLevel.Information;

    public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
    {
        ArgumentNullException.ThrowIfNull(formatter);
        var isOutput = eventId.Id == PythonWorkerPool.PolicyOutput.Id;
        if (!isOutput && logLevel < LogLevel.Warning) return;
        var line = isOutput ? formatter(state, exception) : $"{(logLevel >= LogLevel.Error ? "error" : "warning")}: {formatter(state, exception)}";
        // Policy output arrives on the worker's output pump, concurrently with the command's own messages.
        lock (error) error.WriteLine(line);
    }
}
