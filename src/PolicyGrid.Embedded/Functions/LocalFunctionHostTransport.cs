using PolicyGrid.Core.Ports;

namespace PolicyGrid.Embedded.Functions;

/// <summary>Functions deployed on an <c>inproc://</c> executor (the built-in <c>local</c> one) run in this process's host.</summary>
public sealed class LocalFunctionHostTransport(LocalFunctionHost host) : IFunctionHostTransport
{
    public bool CanHandle(Uri executorHostUri) => executorHostUri.Scheme == "inproc";

    public IFunctionHost For(Uri executorHostUri) => host;
}
