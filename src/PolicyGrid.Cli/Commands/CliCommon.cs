using System.CommandLine;
using System.Text.Json;
using System.Text.Json.Nodes;
using PolicyGrid.Cli.Client;
using PolicyGrid.Cli.Serve;
using Spectre.Console;

namespace PolicyGrid.Cli.Commands;

/// <summary>
/// Options every client verb shares (<c>--server</c>, <c>--token</c>, <c>--json</c>) and the one way
/// a verb runs: a server failure prints the server's message and exits 1, an unreachable server 3,
/// a usage mistake 2.
/// </summary>
public static class CliCommon
{
    public const int Ok = 0, ServerSaidNo = 1, UsageError = 2, Unreachable = 3;

    /// <summary>Ctrl-C (SIGINT) stopped the verb: 128 + 2, as a shell reports a command SIGINT ended.</summary>
    public const int Interrupted = 130;

    public static readonly Option<string> Server = new("--server")
    {
        Description = "Server URL (env POLICYGRID_SERVER; default " + ServeArguments.DefaultUrl + ")",
        DefaultValueFactory = _ => Environment.GetEnvironmentVariable("POLICYGRID_SERVER") is { Length: > 0 } s ? s : ServeArguments.DefaultUrl,
        Recursive = true,
    };

    public static readonly Option<string?> Token = new("--token")
    {
        Description = "API token (env POLICYGRID_TOKEN), sent as Authorization: Bearer",
        DefaultValueFactory = _ => Environment.GetEnvironmentVariable("POLICYGRID_TOKEN") is { Length: > 0 } t ? t : null,
        Recursive = true,
    };

    public static readonly Option<bool> Json = new("--json") { Description = "Print the raw JSON data instead of a table", Recursive = true };

    /// <summary>The default of <see cref="HttpTimeout"/>: the longest policy deadline a server allows by default (300 s) and a margin.</summary>
    public const double DefaultHttpTimeoutSeconds = 330;

    public static readonly Option<double> HttpTimeout = new("--http-timeout")
    {
        Description = $"Seconds to wait for each answer from the server (env POLICYGRID_HTTP_TIMEOUT; default {DefaultHttpTimeoutSeconds:0})",
        DefaultValueFactory = _ => Environment.GetEnvironmentVariable("POLICYGRID_HTTP_TIMEOUT") is { Length: > 0 } t
            && double.TryParse(t, System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out var s) ? s : DefaultHttpTimeoutSeconds,
        Recursive = true,
    };

    public static void AddGlobalOptions(RootCommand root)
    {
        root.Add(Server);
        root.Add(Token);
        root.Add(Json);
        root.Add(HttpTimeout);
    }

    /// <summary>Wires a verb's work with the shared error handling.</summary>
    public static void SetRun(this Command command, CliEnvironment env, Func<ParseResult, CliSession, CancellationToken, Task<int>> run) =>
        command.SetAction(async (parse, ct) =>
        {
            var session = new CliSession(env, parse);
            try
            {
                return await run(parse, session, ct);
            }
            catch (ServerFailureException e)
            {
                env.Error.WriteLine(e.Status == 0 ? $"error: {e.Message}" : $"error: {e.Message} ({e.Status} {e.Code})");
                if (TokenHint(e.Status, parse) is { } hint) env.Error.WriteLine(hint);
                if (RetryHint(e.RetryAfterSeconds) is { } retry) env.Error.WriteLine(retry);
                if (e.Status == 404 && await session.MissingPolicyHintAsync(ct) is { } missing) env.Error.WriteLine(missing);
                if (session.HintFor?.Invoke(e) is { } own) env.Error.WriteLine(own);
                return e.Status == 0 ? Unreachable : ServerSaidNo;
            }
            catch (UsageException e)
            {
                env.Error.WriteLine($"error: {e.Message}");
                return UsageError;
            }
            catch (OperationCanceledException) when (ct.IsCancellationRequested)
            {
                env.Error.WriteLine(session.Interrupted ?? "interrupted");
                return Interrupted;
            }
        });

    /// <summary>
    /// What a CLI user does about a 401 or 403. The server's message speaks HTTP ("send 'Authorization: Bearer
    /// &lt;token&gt;'"), which a CLI user does not write: the CLI sends the token it is given with --token or
    /// POLICYGRID_TOKEN, and said neither.
    /// </summary>
    public static string? TokenHint(int status, ParseResult parse)
    {
        var given = parse.GetValue(Token) is { Length: > 0 };
        return (status, given) switch
        {
            (401, false) => "hint: this server requires an API token; give it with --token <token> or the environment variable POLICYGRID_TOKEN",
            (401, true) => "hint: the server does not accept the token given with --token or POLICYGRID_TOKEN; check it against the server's PolicyGrid:Auth:Tokens",
            (403, _) => "hint: give a token with the scope named above, with --token <token> or POLICYGRID_TOKEN",
            _ => null,
        };
    }

    /// <summary>When to try a 429 or 503 again, as its Retry-After said; null when it did not say.</summary>
    public static string? RetryHint(int? seconds) =>
        seconds is { } s ? $"hint: the server asks to try again in {s} s" : null;

    /// <summary>The longest wait or deadline a timer takes (int.MaxValue ms, about 24.8 days).</summary>
    public const double MaxSeconds = int.MaxValue / 1000.0;

    /// <summary>
    /// A number of seconds given to an option, checked here: NaN, Infinity or a value past what a timer takes crashed
    /// the CLI with a stack trace (TimeSpan, the JSON writer or CancelAfter refusing it) where a usage error belongs.
    /// </summary>
    public static double? Seconds(double? value, string option, bool zeroAllowed = false)
    {
        if (value is not { } seconds) return null;
        if (double.IsFinite(seconds) && (zeroAllowed ? seconds >= 0 : seconds > 0) && seconds <= MaxSeconds) return seconds;
        throw new UsageException($"{option} must be a number of seconds {(zeroAllowed ? "from 0" : "greater than 0")} and at most "
            + $"{MaxSeconds.ToString("0.###", System.Globalization.CultureInfo.InvariantCulture)}, not {seconds.ToString(System.Globalization.CultureInfo.InvariantCulture)}");
    }

    /// <summary>
    /// Parses a JSON option value, naming the option when it is not JSON. <c>@path</c> reads the JSON from that file, as
    /// curl's <c>-d @file</c> does (no JSON text starts with @): the parser's response files took <c>--input @in.json</c>
    /// for a list of command-line words and split the JSON at its spaces ("Unrecognized command or argument '}'").
    /// </summary>
    public static JsonNode? ParseJson(string? text, string option)
    {
        if (text is ['@', .. var path])
        {
            var what = $"{option} file '{path}'";
            try { return Written(JsonNode.Parse(ReadFile(path, what)), what); }
            catch (JsonException e) { throw new UsageException($"{what} is not valid JSON: {e.Message}"); }
        }
        if (string.IsNullOrWhiteSpace(text)) return null;
        try { return Written(JsonNode.Parse(text), option); }
        // The usual cause is quoting: single-quoted or bare keys (Python or JavaScript habits), or a shell that split or
        // ate the quotes. Say how JSON is written on a command line, not only where the parser stopped.
        catch (JsonException e)
        {
            throw new UsageException($"{option} is not valid JSON: {e.Message} JSON puts keys and strings in double quotes; "
                + $"in a shell, quote the whole value with single quotes: {option} '{{\"key\": \"value\"}}'");
        }
    }

    // The parser takes an escaped lone surrogate ("\ud800", as a value or a key) as valid syntax; writing the text for the
    // server (or the policy) then threw InvalidOperationException, printed as an unhandled exception's stack trace.
    private static JsonNode? Written(JsonNode? node, string what)
    {
        try
        {
            node?.ToJsonString();
            return node;
        }
        catch (InvalidOperationException)
        {
            throw new UsageException($"{what} holds an escaped lone surrogate (\\ud800-\\udfff without its pair), which no JSON text can hold");
        }
    }

    public static JsonObject? ParseJsonObject(string? text, string option) => ParseJson(text, option) switch
    {
        null => null,
        JsonObject o => o,
        var other => throw new UsageException($"{option} must be a JSON object, not {other.GetValueKind().ToString().ToLowerInvariant()}"),
    };

    /// <summary>Reads a JSON file, naming the file when it cannot.</summary>
    public static JsonObject ReadJsonFile(string path, string what)
    {
        try
        {
            return Written(JsonNode.Parse(ReadFile(path, $"{what} '{path}'")), $"{what} '{path}'") as JsonObject ?? throw new UsageException($"{what} '{path}' must hold a JSON object");
        }
        catch (JsonException e) { throw new UsageException($"{what} '{path}' is not valid JSON: {e.Message}"); }
    }

    /// <summary>A file's text; <paramref name="what"/> names it in the usage error when there is none to read (a directory was "does not exist").</summary>
    private static string ReadFile(string path, string what)
    {
        if (Directory.Exists(path)) throw new UsageException($"{what} is a directory; give the JSON file in it");
        if (!File.Exists(path)) throw new UsageException($"{what} does not exist");
        try { return File.ReadAllText(path); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { throw new UsageException($"{what} cannot be read: {e.Message}"); }
    }
}

/// <summary>A mistake in how the command was called; exit code 2.</summary>
public sealed class UsageException(string message) : Exception(message);

/// <summary>One verb's view of the world: where to print and how to reach the server it was pointed at.</summary>
public sealed class CliSession(CliEnvironment env, ParseResult parse)
{
    public CliEnvironment Env => env;
    public bool Json => parse.GetValue(CliCommon.Json);

    public string? TokenHint(int status) => CliCommon.TokenHint(status, parse);

    /// <summary>
    /// The policy URI this verb names, set before it calls the server: a 404 then says which versions of that name are
    /// registered (a typo'd version or release tag), or that none is (a typo'd name), where the server's answer only
    /// said the URI was unknown.
    /// </summary>
    public string? PolicyNamed { get; set; }

    /// <summary>What Ctrl-C leaves behind, when it leaves something (a job still running); null for a plain "interrupted".</summary>
    public string? Interrupted { get; set; }

    /// <summary>The verb's own hint for a refusal it knows the way out of (a line starting "hint: "); null for none.</summary>
    public Func<ServerFailureException, string?>? HintFor { get; set; }

    /// <summary>The hint for a 404 about <see cref="PolicyNamed"/>; null when it is registered (the 404 was about something else) or cannot be read.</summary>
    public async Task<string?> MissingPolicyHintAsync(CancellationToken ct)
    {
        if (PolicyNamed is not { Length: > 0 } uri) return null;
        var name = uri.Split(':', 2)[0];
        try
        {
            var found = await Client().PostAsync("policy/query?limit=20&sort=version:desc", new JsonObject { ["name"] = name }, ct);
            var uris = (found.Data as JsonArray ?? []).Select(p => p?["policy_rule_uri"]?.GetValue<string>()).OfType<string>().ToList();
            if (uris.Contains(uri)) return null;
            return uris.Count > 0
                ? $"hint: registered versions of '{name}': {string.Join(", ", uris)}"
                : $"hint: no policy is named '{name}'; `policygrid policy query '{{}}'` lists the registered ones";
        }
        catch (ServerFailureException) { return null; }
        catch (UsageException) { return null; }
    }

    public RegistryClient Client()
    {
        var (http, _, token) = Connection();
        return new RegistryClient(http, token, AnswerTimeout(), Warn);
    }

    /// <summary>How long to wait for each answer (--http-timeout): a server that accepts and never answers is an error, not a hang.</summary>
    public TimeSpan AnswerTimeout()
    {
        // Past MaxSeconds, CancelAfter threw (--http-timeout 1e8 crashed every verb with a stack trace).
        return TimeSpan.FromSeconds(CliCommon.Seconds(parse.GetValue(CliCommon.HttpTimeout), "--http-timeout")!.Value);
    }

    /// <summary>The HttpClient for --server, the server's URL and the --token, for verbs that use the SDK.</summary>
    public (HttpClient Http, Uri Server, string? Token) Connection()
    {
        var server = parse.GetValue(CliCommon.Server)!;
        if (!Uri.TryCreate(server.EndsWith('/') ? server : server + "/", UriKind.Absolute, out var uri) || uri.Scheme is not ("http" or "https"))
        {
            // The address alone (127.0.0.1:10000, localhost:10000) is the usual slip: say the URL it means.
            var given = parse.GetResult(CliCommon.Server) is { Implicit: false } ? "--server" : "POLICYGRID_SERVER";
            throw new UsageException(server.Contains("://", StringComparison.Ordinal)
                ? $"{given} '{server}' is not an http(s) URL"
                : $"{given} '{server}' is not an http(s) URL; give the scheme too: http://{server}");
        }
        return (env.HttpClientFor(uri), uri, parse.GetValue(CliCommon.Token));
    }

    /// <summary>Prints the raw JSON (for --json) or lets <paramref name="forPeople"/> render it.</summary>
    public void Show(JsonNode? data, Action<IAnsiConsole> forPeople)
    {
        if (Json) env.Out.WriteLine(data?.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) ?? "null");
        else forPeople(env.Console);
    }

    /// <summary>A warning the server answered with, on stderr (so --json output stays one JSON document).</summary>
    public void Warn(string warning) => env.Error.WriteLine($"warning: {warning}");

    public void Note(string text)
    {
        if (!Json) env.Console.MarkupLine(Markup.Escape(text));
    }
}
