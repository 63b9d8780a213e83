using System.IO.Compression;
using System.Text;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Mvc.Testing;
using Microsoft.AspNetCore.TestHost;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using PolicyGrid.Core.Documents;
using PolicyGrid.Core.Ports;
using Shouldly;

namespace PolicyGrid.TestSupport;

/// <summary>
/// The real embedded server (Program.Main → PolicyGridApp.Build, the composition of <c>policygrid serve</c>) on a
/// SQLite data directory. A server makes a fresh directory and removes it when disposed, unless the test hands it
/// one (<see cref="DataDirectory"/>); <see cref="ExitAsync"/> then <see cref="Restart"/> is the same server restarted.
/// </summary>
/// <remarks>Configured by init properties, not constructor arguments, so that a subclass with fixed settings can still
/// be an xunit class fixture (which needs one public constructor).</remarks>
public class GridServer : WebApplicationFactory<PolicyGrid.Cli.Program>
{
    private readonly string _dataDirectory = NewDataDirectory();
    private bool _removesData = true;
    private bool _exited;

    public static string NewDataDirectory() => Path.Combine(Path.GetTempPath(), "pg-grid-tests", Guid.NewGuid().ToString("N"));

    /// <summary>Where the store, bundles and job files live. A directory given here is the caller's to remove.</summary>
    public string DataDirectory
    {
        get => _dataDirectory;
        init { _dataDirectory = value; _removesData = false; }
    }

    /// <summary>Configuration as <c>serve</c> reads it from appsettings or its command line (tokens, limits, ...).</summary>
    public Dictionary<string, string?> Settings { get; init; } = [];

    /// <summary>Python workers in the pool; unset keeps the server's default (one per core, at least two).</summary>
    public int? PythonWorkers { get; init; }

    protected override IHost CreateHost(IHostBuilder builder)
    {
        Directory.CreateDirectory(DataDirectory);
        // Host configuration reaches Program.Main as --key=value arguments, so --data is parsed exactly as serve parses it.
        builder.ConfigureHostConfiguration(c => c.AddInMemoryCollection(new Dictionary<string, string?> { ["data"] = DataDirectory }));
        return base.CreateHost(builder);
    }

    /// <summary>Changes to the composition, applied after serve's own registrations (replace a service with a double).</summary>
    public Action<IServiceCollection>? TestServices { get; init; }

    protected override void ConfigureWebHost(IWebHostBuilder builder)
    {
        if (TestServices is { } services) builder.ConfigureTestServices(services);
        if (PythonWorkers is { } workers) builder.UseSetting("PolicyGrid:Runtime:Pool:Workers", workers.ToString(System.Globalization.CultureInfo.InvariantCulture));
        foreach (var (key, value) in Settings) builder.UseSetting(key, value);
    }

    /// <summary>Stops the server as a process exit would: the data directory stays, for <see cref="Restart"/>.</summary>
    public async Task ExitAsync()
    {
        _exited = true;
        await base.DisposeAsync();
        // serve's own entry point disposes the host too, on its thread, when the host stops; the dispose above can
        // return while that one is still under way, with the data directory's lock not yet released. A process exit
        // ends with the lock released: wait for that, so Restart never meets its own predecessor.
        if (!Directory.Exists(DataDirectory)) return; // never started
        var until = DateTime.UtcNow.AddSeconds(30);
        while (true)
        {
            try
            {
                PolicyGrid.Cli.Serve.DataDirectoryLock.Acquire(DataDirectory).Dispose();
                return;
            }
            catch (PolicyGrid.Cli.Serve.ServeRefusedException) when (DateTime.UtcNow < until)
            {
                await Task.Delay(20);
            }
        }
    }

    /// <summary>
    /// A new server over this one's data directory and settings: this server restarted. It starts on first use, so a
    /// test can still change the world in between (kill a job's process, release a held node); removing the directory
    /// passes to it.
    /// </summary>
    public GridServer Restart()
    {
        // Two live servers over one SQLite directory would be two registries fighting, not a restart.
        if (!_exited) throw new InvalidOperationException("ExitAsync the server before restarting it");
        var restarted = new GridServer { DataDirectory = DataDirectory, Settings = new(Settings), PythonWorkers = PythonWorkers, TestServices = TestServices };
        restarted._removesData = _removesData;
        _removesData = false;
        return restarted;
    }

    public override async ValueTask DisposeAsync()
    {
        await base.DisposeAsync();
        GC.SuppressFinalize(this);
        if (_removesData && !_exited)
            try { Directory.Delete(DataDirectory, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }

    public T Service<T>() where T : notnull => Services.GetRequiredService<T>();
    public IDocumentStore Store => Service<IDocumentStore>();
    public IBundleStore Bundles => Service<IBundleStore>();

    /// <summary>A client sending <c>Authorization: Bearer</c> with every request; none when <paramref name="token"/> is null.</summary>
    public HttpClient ClientWith(string? token)
    {
        var client = CreateClient();
        if (token is not null) client.DefaultRequestHeaders.Authorization = new("Bearer", token);
        return client;
    }

    public const string EchoPolicy = """
        class AIOSv1PolicyRule:
            def __init__(self, rule_id, settings, parameters):
                self.rule_id = rule_id
            def eval(self, parameters, input_data, context):
                return {"echo": input_data}
        """;

    /// <summary>A zip holding code/function.py, as a policy author would upload it.</summary>
    public static byte[] Zip(string functionPy) => Zip(("code/function.py", functionPy));

    /// <summary>
    /// A zip of the given files (paths inside the archive). The same files always make the same bytes (and so the same
    /// bundle://): entries carry a fixed timestamp, not the time they were zipped.
    /// </summary>
    public static byte[] Zip(params (string Path, string Content)[] files)
    {
        using var buffer = new MemoryStream();
        using (var zip = new ZipArchive(buffer, ZipArchiveMode.Create, leaveOpen: true))
        {
            foreach (var (path, content) in files)
            {
                var entry = zip.CreateEntry(path);
                entry.LastWriteTime = new DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.Zero);
                using var w = new StreamWriter(entry.Open(), Encoding.UTF8);
                w.Write(content);
            }
        }
        return buffer.ToArray();
    }

    /// <summary>Stores a bundle running <paramref name="source"/> and answers its bundle:// code.</summary>
    public async Task<string> StoreBundleAsync(string source = EchoPolicy) => (await Bundles.PutAsync(Zip(source))).Code;

    /// <summary>Registers a policy running <paramref name="source"/> through <c>POST /policy</c>, as a user would; answers its URI.</summary>
    public async Task<string> RegisterPolicyAsync(string name, string source, JsonObject? parametersSchema = null, JsonObject? parameters = null)
    {
        var body = new JsonObject
        {
            ["name"] = name,
            ["version"] = "1.0",
            ["release_tag"] = "test",
            ["code"] = await StoreBundleAsync(source),
            ["type"] = "python_class_v1",
            ["policy_parameters_schema"] = parametersSchema ?? new JsonObject(),
            ["policy_parameters"] = parameters ?? new JsonObject(),
        };
        var answer = await CreateClient().Send(HttpMethod.Post, "/policy", body);
        answer.Status.ShouldBe(200, answer.Body?.ToJsonString());
        return $"{name}:1.0-test";
    }

    /// <summary>
    /// Puts a policy straight into the store, skipping the Policies API (and its dry load): for suites that only read
    /// policies, and for states the API would refuse (e.g. <c>"status": "retired"</c> in <paramref name="extra"/>).
    /// </summary>
    public async Task<string> StorePolicyAsync(string name, string functionPy, JsonObject? extra = null)
    {
        var uri = $"{name}:1.0-test";
        var doc = new JsonObject
        {
            ["policy_rule_uri"] = uri, ["name"] = name, ["version"] = "1.0", ["release_tag"] = "test",
            ["code"] = await StoreBundleAsync(functionPy), ["type"] = "python_class_v1",
        };
        foreach (var (k, v) in extra ?? []) doc[k] = v?.DeepClone();
        await Store.CreateAsync(Collections.Policies, uri, PolicyRule.FromJson(doc).ToJson());
        return uri;
    }

    /// <summary>Puts an executor straight into the store, in any status and with the labels and vCPUs allocation reads.</summary>
    public async Task StoreExecutorAsync(string id, string uri, JsonObject? labels = null, JsonNode? vcpus = null, string status = "healthy")
    {
        var doc = new JsonObject
        {
            ["executor_id"] = id, ["executor_host_uri"] = uri,
            ["executor_metadata"] = new JsonObject { ["labels"] = labels ?? [] },
            ["executor_hardware_info"] = vcpus is null ? new JsonObject() : new JsonObject { ["vcpus"] = vcpus },
            ["executor_status"] = status,
        };
        await Store.UpsertAsync(Collections.Executors, id, PolicyExecutor.FromJson(doc).ToJson());
    }
}
