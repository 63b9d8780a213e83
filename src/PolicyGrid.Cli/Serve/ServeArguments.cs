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
        RefuseUnknownOptions(rest);
        data ??= Environment.GetEnvironmentVariable("POLICYGRID_DATA");
        if (string.IsNullOrWhiteSpace(data)) data = DefaultDataDirectory();
        return new ServeArguments(Path.GetFullPath(data), insecure, [.. rest]);
    }

    /// <summary>The host's own settings without a section (ASP.NET reads these from the command line), besides --urls.</summary>
    private static readonly HashSet<string> HostSettings = new(StringComparer.OrdinalIgnoreCase)
    {
        "urls", "environment", "contentRoot", "applicationName", "webroot", "http_ports", "https_ports", "AllowedHosts",
        "hostingStartupAssemblies", "hostingStartupExcludeAssemblies", "preventHostingStartup", "detailedErrors",
        "captureStartupErrors", "shutdownTimeoutSeconds", "suppressStatusMessages", "preferHostingUrls",
    };

    /// <summary>
    /// Everything but --data and --insecure goes to ASP.NET's configuration, which takes any key: a mistyped option
    /// (--port 10001, --dat /srv/pg) was stored as a setting nothing reads, and serve started on the default port or
    /// data directory instead. Options without a section must be ones the host reads; settings are --Section:Key=value.
    /// </summary>
    private static void RefuseUnknownOptions(List<string> args)
    {
        foreach (var arg in args)
        {
            if (!arg.StartsWith('-') || arg.Length < 2 || char.IsDigit(arg[1])) continue; // values (-1 included)
            // An empty --Section= is how the host's own tools (WebApplicationFactory) pass a section above its keys.
            if (arg.EndsWith('=') && arg.IndexOf('=') == arg.Length - 1) continue;
            var name = arg.TrimStart('-').Split('=', 2)[0];
            if (name.Contains(':', StringComparison.Ordinal) || HostSettings.Contains(name)) continue;
            throw new ServeRefusedException($"serve does not take {arg.Split('=', 2)[0]}: it takes --urls, --data, --insecure and settings written "
                + "--Section:Key=value (see policygrid serve --help); to listen on another port, give --urls http://127.0.0.1:<port>");
        }
    }

    /// <summary>A per-user folder: $XDG_DATA_HOME/policygrid or ~/.local/share/policygrid (LocalApplicationData elsewhere).</summary>
    public static string DefaultDataDirectory() =>
        Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.LocalApplicationData, Environment.SpecialFolderOption.DoNotVerify), "policygrid");
}

/// <summary><c>serve</c> will not start as asked; the message says why and what to do.</summary>
public sealed class ServeRefusedException(string message) : Exception(message);
