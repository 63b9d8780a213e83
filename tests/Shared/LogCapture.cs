using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;

namespace PolicyGrid.TestSupport;

/// <summary>
/// Keeps every log entry of a server, to check what an operator would read in its log. Hand it in with
/// <c>new GridServer { TestServices = s => s.AddSingleton&lt;ILoggerProvider&gt;(capture) }</c>.
/// </summary>
public sealed class LogCapture : ILoggerProvider
{
    public ConcurrentQueue<(string Category, LogLevel Level, EventId Id, string Message, Exception? Error)> Entries { get; } = new();

    public ILogger CreateLogger(string categoryName) => new CategoryLogger(categoryName, Entries);

    public void Dispose() { }

    /// <summary>
    /// Warnings and worse, without the worker pool's own: its first start in a process on a host whose <c>python3</c> the
    /// workers cannot use notes the fallback interpreter once, in whichever test's server started it first.
    /// </summary>
    public List<(string Category, LogLevel Level, EventId Id, string Message, Exception? Error)> WarningsButThePools() =>
        [.. Entries.Where(e => e.Level >= LogLevel.Warning && !e.Category.StartsWith("PolicyGrid.Runtime.Hosting.", StringComparison.Ordinal))];

    /// <summary>Every entry, one a line, for a failing assertion's message.</summary>
    public override string ToString() => string.Join("\n", Entries.Select(e => $"{e.Category} {e.Level}: {e.Message}"));

    private sealed class CategoryLogger(string category, ConcurrentQueue<(string, LogLevel, EventId, string, Exception?)> entries) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;
        // None is never logged (every provider of the framework answers so; Polly asks with it for events turned off).
        public bool IsEnabled(LogLevel logLevel) => logLevel != LogLevel.None;
        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            if (IsEnabled(logLevel)) entries.Enqueue((category, logLevel, eventId, formatter(state, exception), exception));
        }
    }
}
