using PolicyGrid.Core.Hosting;

namespace PolicyGrid.Cli.Serve;

/// <summary>
/// The rule of DESIGN.md "Security defaults": an open (token-less) API is only allowed on loopback.
/// Binding anywhere else needs tokens or an explicit --insecure.
/// </summary>
public static class BindSafety
{
    public static void Check(IEnumerable<string> urls, bool tokensConfigured, bool insecure)
    {
        if (tokensConfigured || insecure) return;
        var exposed = urls.Where(u => !ListenUrl.IsLoopback(u)).ToList();
        if (exposed.Count == 0) return;
        throw new ServeRefusedException(
            $"refusing to serve without API tokens on a non-loopback address ({string.Join(", ", exposed)}). " +
            "Configure tokens (PolicyGrid:Auth:Tokens, see docs/api.md) or pass --insecure to run an open API on purpose.");
    }
}
