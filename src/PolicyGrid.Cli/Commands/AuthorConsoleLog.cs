using Microsoft.Extensions.Logging;
using PolicyGrid.Runtime.Hosting;

namespace PolicyGrid.Cli.Commands;

/// <summary>
/// The log of a policy run by a command (<c>policy test</c>, <c>eval --local</c>) as stderr shows it: every line
/// the policy printed or logged (an author's first debugging tool), and warnings and errors (e.g. that the worker
/// runs on another interpreter or user than configured). Routine messages are left out.
/// </summary>
internal sealed class AuthorConsoleLog(TextWriter error) : ILoggerProvider, ILogger
{
    /// <summary>A factory whose every logger writes here.</summary>
    public static ILoggerFactory Factory(TextWriter error) => LoggerFactory.Create(b => b.AddProvider(new AuthorConsoleLog(error)));

    public ILogger CreateLogger(string categoryName) => this;

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

    public void Dispose() { }
}
