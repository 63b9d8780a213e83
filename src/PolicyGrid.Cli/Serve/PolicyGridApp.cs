using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.Options;
using PolicyGrid.Api;
using PolicyGrid.Api.Auth;
using PolicyGrid.Api.Hosting;
using PolicyGrid.Cli.Jobs;
using PolicyGrid.Cli.Serve;
using PolicyGrid.Embedded.Functions;
using PolicyGrid.Embedded.Storage;
using PolicyGrid.Runtime;
using PolicyGrid.Embedded.Events;

namespace PolicyGrid.Cli;

/// <summary>
/// The one composition of the embedded server, used by <c>policygrid serve</c> and by the tests
/// (WebApplicationFactory runs <see cref="Program.Main"/>, which lands here).
/// </summary>
public static class PolicyGridApp
{
    public static WebApplication Build(string[] args)
    {
        var serve = ServeArguments.Parse(args);
        var builder = PolicyGridHostBuilder.Create(serve.HostArgs);

        var urls = builder.Configuration["urls"];
        if (string.IsNullOrWhiteSpace(urls))
        {
            urls = ServeArguments.DefaultUrl;
            builder.WebHost.UseUrls(urls);
        }
        var tokensConfigured = builder.Configuration.GetSection($"{ApiAuthOptions.Section}:Tokens").GetChildren().Any();
        // Endpoints configured for Kestrel itself replace --urls (Kestrel logs that it overrides them): they are checked too.
        var kestrelEndpoints = builder.Configuration.GetSection("Kestrel:Endpoints").GetChildren()
            .Select(e => e["Url"]).OfType<string>().Where(u => u.Length > 0);
        string[] listenOn = [.. urls.Split(';', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries), .. kestrelEndpoints];
        foreach (var url in listenOn)
        {
            // Read as Kestrel will: a URL without its scheme (--urls 127.0.0.1:10001) crashed serve at bind time with an
            // unhandled FormatException and its stack trace.
            Microsoft.AspNetCore.Http.BindingAddress address;
            try { address = Microsoft.AspNetCore.Http.BindingAddress.Parse(url); }
            catch (FormatException) { throw new ServeRefusedException($"'{url}' is not an address to listen on: give scheme, host and port, e.g. --urls http://127.0.0.1:10001"); }
            // A port past 65535 crashed serve at bind time with an unhandled ArgumentOutOfRangeException and its stack trace.
            // Another scheme (ftp://, tcp://) crashed serve at bind time with Kestrel's unhandled InvalidOperationException
            // and its stack trace, or, off loopback, was refused for want of API tokens.
            if (!address.Scheme.Equals("http", StringComparison.OrdinalIgnoreCase) && !address.Scheme.Equals("https", StringComparison.OrdinalIgnoreCase))
                throw new ServeRefusedException($"'{url}' is not an address to listen on: serve speaks http:// and https:// only, e.g. --urls http://127.0.0.1:10001");
            if (!address.IsUnixPipe && address.Port is < 0 or > 65535)
                throw new ServeRefusedException($"'{url}' is not an address to listen on: its port {address.Port} is not 0 to 65535, e.g. --urls http://127.0.0.1:10001");
        }
        BindSafety.Check(listenOn, tokensConfigured, serve.Insecure);
        if (UnknownSettings.In(builder.Configuration) is { Count: > 0 } unknown)
            throw new ServeRefusedException($"{string.Join(", ", unknown)} {(unknown.Count == 1 ? "is no setting" : "are no settings")} PolicyGrid reads "
                + "(misspelt? see the settings tables in docs/runtime.md and docs/api.md): correct or remove "
                + (unknown.Count == 1 ? "it" : "them") + "; the server would have run with the default in its place");

        // One line at start (ours, below); the framework's own start-up chatter is noise here.
        builder.Logging.AddFilter("Microsoft.Hosting.Lifetime", LogLevel.Warning);
        // A start that fails (the port is taken) is told by ServeAsync in one line, or by the exception itself, which
        // RunAsync throws; the host's own log of it repeated the stack trace, then logged each background service that
        // the failed start cancelled as crashed (error and critical). Its messages count again once it has started.
        var started = new StartGate();
        builder.Logging.AddFilter("Microsoft.Extensions.Hosting.Internal.Host", level => started.Open && level >= LogLevel.Information);
        builder.Logging.AddFilter("Microsoft.AspNetCore", LogLevel.Warning);
        builder.Logging.AddSimpleConsole(o => o.SingleLine = true);

        try
        {
            Directory.CreateDirectory(serve.DataDirectory);
            // The database holds every policy's settings, parameters and context, the decision log and job results:
            // readable by this server's user only, never by the policy workers (SQLite makes its files 0644).
            if (!OperatingSystem.IsWindows()) File.SetUnixFileMode(serve.DataDirectory, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // --data naming a file, or a place this user cannot write, crashed serve with the exception's stack trace.
            throw new ServeRefusedException($"cannot use '{serve.DataDirectory}' as the data directory: {e.Message} Give --data a directory this user may create and write.");
        }
        var dataLock = DataDirectoryLock.Acquire(serve.DataDirectory);
        // Made by a factory (and resolved by a hosted service, and below) so the container owns it:
        // released when the server's services are disposed.
        builder.Services.AddSingleton(_ => dataLock);
        builder.Services.AddSingleton<ServeStopped>();
        builder.Services.AddHostedService<DataDirectoryLockHolder>();
        builder.Services.AddSingleton(serve);
        builder.Services.AddEmbeddedStorage(serve.DataDirectory);
        builder.Services.AddPolicyRuntime(builder.Configuration);
        builder.Services.AddPolicyGridApi(builder.Configuration);
        builder.Services.AddHostedService<BuiltInExecutor>();
        builder.Services.AddSingleton(new PolicyGrid.Core.Ports.BuiltInExecutorId(PolicyGrid.Api.Executors.ExecutorsApi.BuiltInId));
        builder.Services.AddEmbeddedEvents();
        builder.Services.AddEmbeddedFunctionHost(builder.Configuration);
        builder.Services.AddHostedService<PolicyGrid.Api.Functions.FunctionReconciler>();
        builder.Services.AddEmbeddedGraphRunner();
        builder.Services.AddJobLaunchers(serve.DataDirectory, builder.Configuration);

        WebApplication app;
        try
        {
            app = builder.Build();
            app.Services.GetRequiredService<DataDirectoryLock>();
        }
        catch
        {
            dataLock.Dispose();
            throw;
        }
        app.MapPolicyGridApi();
        app.Lifetime.ApplicationStarted.Register(() =>
        {
            started.Open = true;
            AnnounceStopSignals(app); // before the line that says it is up: a signal sent once it is said is handled
            AnnounceStart(app, serve);
        });
        return app;
    }

    private sealed class StartGate
    {
        public volatile bool Open;
    }

    /// <summary>What <c>serve --help</c> prints: the options serve reads itself and the ones it hands to ASP.NET.</summary>
    public const string Usage = """
        Usage: policygrid serve [--urls <url>[;<url>...]] [--data <dir>] [--insecure] [--<Configuration:Key>=<value> ...]

          --urls        addresses to listen on (default http://127.0.0.1:10000); a non-loopback address needs API tokens or --insecure
          --data        data directory: documents, bundles, jobs (default $POLICYGRID_DATA, else ~/.local/share/policygrid); one server per directory
          --insecure    serve without API tokens on a non-loopback address
          --Key=value   any configuration setting, e.g. --PolicyGrid:Runtime:RemoteExecutors:Overhead=00:00:05 (see docs/api.md)
        """;

    public static Task<int> ServeAsync(string[] args) => ServeAsync(args, Console.Out, Console.Error);

    /// <summary>Runs the server until it is stopped: 0, or 2 with one line on <paramref name="error"/> when it cannot start as asked.</summary>
    public static async Task<int> ServeAsync(string[] args, TextWriter output, TextWriter error, CancellationToken ct = default)
    {
        // Asked for help, serve must not start (on the default port, in the default data directory) instead.
        if (args.Any(a => a is "--help" or "-h" or "-?"))
        {
            await output.WriteLineAsync(Usage);
            return 0;
        }
        WebApplication app;
        try
        {
            app = Build(args);
        }
        catch (Exception e) when (Refusal(e) is { } line)
        {
            await error.WriteLineAsync($"policygrid serve: {line}");
            return 2;
        }
        var stopped = app.Services.GetRequiredService<ServeStopped>();
        try
        {
            await app.RunAsync(ct);
        }
        catch (Exception e) when (Refusal(e) is { } line)
        {
            await error.WriteLineAsync($"policygrid serve: {line}");
            return 2;
        }
        if (stopped.Reason is { } reason)
        {
            await error.WriteLineAsync($"policygrid serve: {reason}");
            return 1;
        }
        return 0;
    }

    /// <summary>Why serve cannot start as asked, in one line for its operator; null for a failure that is ours (a stack trace helps then).</summary>
    private static string? Refusal(Exception e) => e switch
    {
        ServeRefusedException => e.Message,
        // Settings checked at start (tokens, runtime limits): one line per bad setting, not a stack trace.
        OptionsValidationException v => $"bad configuration:{Environment.NewLine}  {string.Join(Environment.NewLine + "  ", v.Failures)}",
        // A setting that is not of its type (Workers=abc, a timeout written 5s): "Failed to convert configuration value 'abc' at
        // 'PolicyGrid:Runtime:Pool:Workers' to type 'System.Int32'" came with its stack trace (exit 134).
        InvalidOperationException when e.TargetSite?.DeclaringType == typeof(ConfigurationBinder) =>
            $"bad configuration: {e.Message} Give it a value of that type (a number; a time span as [d.]hh:mm:ss[.fff], e.g. 00:00:05; true or false).",
        // A bundle cache or worker directory that cannot be made, written or trusted: an unhandled exception (exit 134) too.
        UnusableSettingException => e.Message,
        // A second serve, or the README's port taken by something else: this crashed with three stack traces (exit 134).
        IOException { InnerException: Microsoft.AspNetCore.Connections.AddressInUseException } =>
            $"{e.Message} Another program (another policygrid serve?) is listening there: stop it, or give this server another address with --urls, e.g. --urls http://127.0.0.1:10001",
        _ => null,
    };

    /// <summary>
    /// Says which signal stops the server and how long calls in flight get: the host's own line about it is filtered out
    /// with its start-up chatter, so a server stopped by SIGTERM left the log without a word, and calls still running when
    /// the shutdown timeout ran out lost their answers unexplained (they are now answered 503 just before it, StopGrace). SIGHUP (its terminal closed, or a "reload" sent to it)
    /// is not one the host handles: the runtime ended the process at once (exit 129), cutting every call in flight and
    /// dropping decisions not yet written. It now stops the server as SIGTERM does. The host does the stopping for the others.
    /// </summary>
    private static void AnnounceStopSignals(WebApplication app)
    {
        var registrations = new List<System.Runtime.InteropServices.PosixSignalRegistration>();
        foreach (var signal in new[] { System.Runtime.InteropServices.PosixSignal.SIGTERM, System.Runtime.InteropServices.PosixSignal.SIGINT,
                     System.Runtime.InteropServices.PosixSignal.SIGHUP, System.Runtime.InteropServices.PosixSignal.SIGQUIT })
        {
            try
            {
                registrations.Add(System.Runtime.InteropServices.PosixSignalRegistration.Create(signal, context =>
                {
                    if (context.Signal == System.Runtime.InteropServices.PosixSignal.SIGHUP)
                    {
                        context.Cancel = true;
                        app.Lifetime.StopApplication();
                    }
                    var grace = app.Services.GetService<IOptions<HostOptions>>()?.Value.ShutdownTimeout ?? TimeSpan.FromSeconds(30);
                    app.Logger.LogWarning("PolicyGrid stopping on {Signal}: calls in flight get {Seconds:0.#} s to finish (--shutdownTimeoutSeconds); "
                        + "those still running then are stopped and answered 503", signal, grace.TotalSeconds);
                }));
            }
            catch (PlatformNotSupportedException) { }
        }
        app.Lifetime.ApplicationStopped.Register(() => registrations.ForEach(r => r.Dispose()));
    }

    private static void AnnounceStart(WebApplication app, ServeArguments serve)
    {
        var addresses = app.Services.GetService<IServer>()?.Features.Get<IServerAddressesFeature>()?.Addresses;
        var where = addresses is { Count: > 0 } ? string.Join(", ", addresses) : "(test server)";
        app.Logger.LogInformation("PolicyGrid listening on {Addresses}; data in {DataDirectory}", where, serve.DataDirectory);
        foreach (var file in SettingsFileExposure.ReadableByOthers((IConfigurationRoot)app.Configuration, $"{ApiAuthOptions.Section}:Tokens"))
                app.Logger.LogWarning("{File} holds API tokens and other users can read it, policy code included (it runs as other users): chmod 600 it", file);
    }
}
