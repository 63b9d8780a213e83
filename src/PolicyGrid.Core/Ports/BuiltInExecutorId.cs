namespace PolicyGrid.Core.Ports;

/// <summary>
/// An executor the composition registers itself at start (serve's <c>local</c>, the Dapr registry's <c>dapr</c>): the
/// API refuses to delete it, rename it or point it elsewhere. Registered as a singleton per built-in executor.
/// </summary>
public sealed record BuiltInExecutorId(string Id);
