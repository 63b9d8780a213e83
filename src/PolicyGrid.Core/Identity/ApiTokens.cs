namespace PolicyGrid.Core.Identity;

/// <summary>What a server takes as an API token: shared by its own settings check and by an installer that hands one to a node.</summary>
public static class ApiTokens
{
    /// <summary>Shorter tokens are refused: they can be guessed.</summary>
    public const int MinimumLength = 16;
}
