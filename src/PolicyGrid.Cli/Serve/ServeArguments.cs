namespace PolicyGrid.Cli.Serve;

/// <summary>
/// The options <c>serve</c> owns (<c>--data</c>, <c>--insecure</c>); everything else (<c>--urls</c>,
/// <c>--environment</c>, configuration overrides) is passed to ASP.NET untouched.
/// </summary>
public sealed record ServeArguments(string DataDirectory, bool Insecure, string[] HostArgs)
{
    public const string DefaultUrl = "http://127.0.0.1:10000";

    public static ServeArguments Parse(IReadOnlyList<string> args)
    {
        string? data = null;
        var insecure = false;
        var rest = new List<string>();
        for (var i = 0; i < args.Count; i++)
        {
            var a = args[i];
            if (a == "--insecure") insecure = true;
            else if (a == "--data")
            {
                if (i + 1 >= args.Count) throw new ServeRefusedException("--data needs a directory");
                data = args[++i];
            }
            else if (a.StartsWith("--data=", StringComparison.Ordinal)) data = a["--data=".Length..];
            else rest.Add(a);
        }
        data ??= Environment.GetEnvironmentVariable("POLICYGRID_DATA");
        if (string.IsNullOrWhiteSpace(data)) data = DefaultDataDirectory();
        return new ServeArguments(Path.GetFullPath(data), insecure, [.. rest]);
    }

    /// <summary>A per-user folder: $XDG_DATA_HOME/policygrid or ~/.local/share/policygrid (LocalApplicationData elsewhere).</summary>
    public static string DefaultDataDirectory() =>
        Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.LocalApplicationData, Environment.SpecialFolderOption.DoNotVerify), "policygrid");
}

/// <summary><c>serve</c> will not start as asked; the message says why and what to do.</summary>
public sealed class ServeRefusedException(string message) : Exception(message);
