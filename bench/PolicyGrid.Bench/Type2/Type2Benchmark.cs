using System.Diagnostics;
using System.IO.Compression;
using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using PolicyGrid.Cli;
using PolicyGrid.Cli.Client;
using PolicyGrid.Core.Ports;
using PolicyGrid.Runtime.Execution;
using PolicyGrid.Runtime.Hosting;
using PolicyGrid.Bench.Type4;

namespace PolicyGrid.Bench.Type2;

/// <summary>
/// Type 2 throughput: <c>POST /executor/local/execute_policy</c> of the ip_allowlist sample over real
/// HTTP on loopback with 16 concurrent clients, against two baselines in the same app and run:
/// a bare endpoint answering a fixed JSON of the same size (the HTTP floor; target ≥ 0.5x), and a
/// cold path that fetches the bundle over HTTP, unpacks it and imports it in a new interpreter on
/// every call (no bundle cache, no resident worker; target: execute_policy ≥ 50x it).
///   dotnet run -c Release --project bench/PolicyGrid.Bench -- type2 [--seconds 10] [--warmup 5] [--rounds 4] [--clients 16] [--breakdown [--only PATH] [--allocations] [--micro [NAME]]]
/// </summary>
public static class Type2Benchmark
{
    public static async Task<int> RunAsync(string[] args)
    {
        var seconds = BenchGrid.Option(args, "--seconds", 10.0);
        var warmup = BenchGrid.Option(args, "--warmup", 5.0);
        var rounds = Math.Max(1, (int)BenchGrid.Option(args, "--rounds", 4.0));
        var clients = (int)BenchGrid.Option(args, "--clients", 16.0);
        if (args.Contains("--inproc")) return await InProcessFloorAsync(args, seconds, warmup, rounds, clients);
        var data = Directory.CreateTempSubdirectory("pg-bench-type2-").FullName;
        byte[] fixedAnswer = [];
        try
        {
            var app = PolicyGridApp.Build(["--urls", "http://127.0.0.1:0", "--data", data, "--Logging:LogLevel:Default=Warning", "--Logging:LogLevel:policygrid=Warning"]);
            app.MapPost("/bench/fixed", () => Results.Bytes(fixedAnswer, "application/json; charset=utf-8"));
            app.MapPost("/bench/cold", ColdEvalAsync);
            // --breakdown: the same call through successively more of the stack, to see where time goes.
            PolicyLoadSpec? load = null;
            app.MapPost("/bench/pool", async (HttpContext h, PythonWorkerPool pool) =>
            {
                var input = (await JsonNode.ParseAsync(h.Request.Body))!.AsObject();
                var args = new JsonObject { ["parameters"] = load!.Parameters.DeepClone(), ["input_data"] = input["input_data"]!.DeepClone(), ["context"] = new JsonObject() };
                var reply = await pool.InvokeAsync(new PolicyInvocation("bench#" + (h.Connection.LocalPort % 2), load, PolicyMethods.Eval, args, TimeSpan.FromSeconds(5)));
                return Results.Json(new JsonObject { ["success"] = true, ["data"] = reply!["result"]!.DeepClone() });
            });
            RawLane[] lanes = [];
            app.MapPost("/bench/raw", async (HttpContext h) =>
            {
                var input = (await JsonNode.ParseAsync(h.Request.Body))!.AsObject();
                var args = new JsonObject { ["input_data"] = input["input_data"]!.DeepClone(), ["context"] = new JsonObject() };
                var reply = JsonNode.Parse(await lanes[h.Connection.RemotePort % lanes.Length].CallAsync(System.Text.Json.JsonSerializer.SerializeToUtf8Bytes(args)))!;
                return Results.Json(new JsonObject { ["success"] = true, ["data"] = reply["value"]!.DeepClone() });
            });
            app.MapPost("/bench/executor", async (HttpContext h, LocalPolicyExecutor executor) =>
            {
                var input = (await JsonNode.ParseAsync(h.Request.Body))!.AsObject();
                var request = new ExecutionRequest(input["policy_rule_uri"]!.GetValue<string>(), input["input_data"]!.AsObject());
                var result = await executor.ExecuteAsync(request, CallerIdentity.Anonymous);
                return Results.Json(new JsonObject { ["success"] = true, ["data"] = result.Output });
            });
            await app.StartAsync();
            using var http = ClientsOf(app, clients);

            var uri = await OnboardSampleAsync(http);
            var body = Encoding.UTF8.GetBytes(new JsonObject { ["policy_rule_uri"] = uri, ["input_data"] = new JsonObject { ["ip"] = "10.0.0.1" } }.ToJsonString());
            var first = await PostAsync(http, "executor/local/execute_policy", body);
            fixedAnswer = first;
            Console.WriteLine($"execute_policy answer ({first.Length} bytes): {Encoding.UTF8.GetString(first)}");

            await MeasureAsync(http, "executor/local/execute_policy", body, clients, 1.0); // warm every worker's instance
            if (args.Contains("--breakdown"))
            {
                var rule = await app.Services.GetRequiredService<PolicyCatalog>().GetRunnableAsync(uri, CancellationToken.None);
                var bundle = await app.Services.GetRequiredService<IPolicyBundleSource>().GetAsync(rule.Code, rule.ExpectedCodeSha256, CancellationToken.None);
                load = new PolicyLoadSpec(rule.PolicyRuleUri, bundle, rule.PolicySettings, rule.PolicyParameters);
                await MeasureAsync(http, "bench/pool", body, clients, 1.0);
                var code = Path.Combine(RepoRoot(), "samples", "policies", "ip_allowlist", "code");
                lanes = [await RawLane.StartAsync(code), await RawLane.StartAsync(code)];
                Console.WriteLine($"raw lane answer: {Encoding.UTF8.GetString(await PostAsync(http, "bench/raw", body))}");
                if (args.Contains("--micro"))
                {
                    var sp = app.Services;
                    var catalog = sp.GetRequiredService<PolicyCatalog>();
                    var contexts = sp.GetRequiredService<IContextStore>();
                    var decisions = sp.GetRequiredService<DecisionLog>();
                    var executor = sp.GetRequiredService<LocalPolicyExecutor>();
                    var pool = sp.GetRequiredService<PythonWorkerPool>();
                    var input = new JsonObject { ["ip"] = "10.0.0.1" };
                    var microOnly = args.SkipWhile(a => a != "--micro").Skip(1).FirstOrDefault();
                    async Task Time(string what, Func<Task> op, int? count = null)
                    {
                        if (microOnly is not null && !what.Contains(microOnly, StringComparison.Ordinal)) return;
                        for (var i = 0; i < (count ?? 20000) / 10; i++) await op();
                        var cpu = Process.GetCurrentProcess().TotalProcessorTime;
                        var clock = Stopwatch.StartNew();
                        var n = count ?? (microOnly is null ? 20000 : 100000);
                        for (var i = 0; i < n; i++) await op();
                        Console.WriteLine($"  {what,-28} {clock.Elapsed.TotalMicroseconds / n,7:F1} µs/op wall, {(Process.GetCurrentProcess().TotalProcessorTime - cpu).TotalMicroseconds / n,7:F1} µs/op CPU");
                    }
                    await Time("catalog.GetRunnableAsync", () => catalog.GetRunnableAsync(uri, CancellationToken.None));
                    await Time("contexts.GetAsync", () => contexts.GetAsync(uri));
                    var counter = 0;
                    await Time("contexts.SetAsync", () => contexts.SetAsync("bench-counter", new JsonObject { ["count"] = ++counter }, null));
                    await Time("CanonicalJson.Sha256(input)", () => { CanonicalJson.Sha256(input); return Task.CompletedTask; });
                    await Time("decisions.RecordAsync", async () => await decisions.RecordAsync(new Decision("execute", uri, "x", "anonymous", uri, "y", "result", "", 200, 0.1, DateTimeOffset.UtcNow)));
                    // The flushes below are waited for on this thread: awaited, every round would end with a thread-pool
                    // thread woken for the next one and spinning idle after it, more CPU than the writes measured (a busy
                    // server's pool has work instead, and nothing there waits for the log).
                    await Time("decision written (batches of 100)", async () =>
                    {
                        for (var i = 0; i < 100; i++) await decisions.RecordAsync(new Decision("execute", uri, "x", "anonymous", uri, "y", "result", "", 200, 0.1, DateTimeOffset.UtcNow));
                        decisions.FlushAsync().GetAwaiter().GetResult();
                    }, microOnly is null ? 200 : 1500);
                    await Time("decisions written (bulk, per 1000)", async () =>
                    {
                        for (var i = 0; i < 1000; i++) await decisions.RecordAsync(new Decision("execute", uri, "x", "anonymous", uri, "y", "result", "", 200, 0.1, DateTimeOffset.UtcNow));
                        decisions.FlushAsync().GetAwaiter().GetResult();
                    }, microOnly is null ? 100 : 500);
                    var bundleSource = sp.GetRequiredService<IPolicyBundleSource>();
                    await Time("bundles.GetAsync", () => bundleSource.GetAsync(rule.Code, rule.ExpectedCodeSha256, CancellationToken.None));
                    await Time("input schema check", () => { PolicyGrid.Core.Templates.TemplateValidator.Ensure(rule.PolicyInputSchema, input, "input_data"); return Task.CompletedTask; });
                    var output = new JsonObject { ["allowed"] = true, ["reason"] = "allowed", ["input_data"] = new JsonObject { ["ip"] = "10.0.0.1" } };
                    await Time("output schema check", () => { PolicyGrid.Core.Templates.TemplateValidator.Validate(rule.PolicyOutputSchema, output, "result"); return Task.CompletedTask; });
                    // As the route and the workers hand them over: nodes over parsed JSON, whose strings are read from UTF-8.
                    var parsedInput = JsonNode.Parse(input.ToJsonString())!.AsObject();
                    await Time("input schema check, parsed", () => { PolicyGrid.Core.Templates.TemplateValidator.Ensure(rule.PolicyInputSchema, parsedInput, "input_data"); return Task.CompletedTask; });
                    var parsedOutput = JsonNode.Parse(output.ToJsonString())!.AsObject();
                    await Time("output schema check, parsed", () => { PolicyGrid.Core.Templates.TemplateValidator.Validate(rule.PolicyOutputSchema, parsedOutput, "result"); return Task.CompletedTask; });
                    var anyKey = "t2:micro";
                    await Time("pool.InvokeOnAnyWorkerAsync", () => pool.InvokeOnAnyWorkerAsync(new PolicyInvocation(anyKey, load, PolicyMethods.Eval, new JsonObject { ["input_data"] = input.DeepClone(), ["context"] = new JsonObject() }, TimeSpan.FromSeconds(5))));
                    await Time("pool.InvokeAsync", () => pool.InvokeAsync(new PolicyInvocation("micro", load, PolicyMethods.Eval, new JsonObject { ["parameters"] = new JsonObject(), ["input_data"] = input.DeepClone(), ["context"] = new JsonObject() }, TimeSpan.FromSeconds(5))));
                    await Time("executor.ExecuteAsync", () => executor.ExecuteAsync(new ExecutionRequest(uri, input), CallerIdentity.Anonymous));
                    await Time("HTTP execute_policy", () => PostAsync(http, "executor/local/execute_policy", body));
                    await Time("HTTP bench/executor", () => PostAsync(http, "bench/executor", body));
                    await Time("HTTP bench/pool", () => PostAsync(http, "bench/pool", body));
                    await Time("HTTP bare", () => PostAsync(http, "bench/fixed", body));
                    return 0;
                }
                var only = args.SkipWhile(a => a != "--only").Skip(1).FirstOrDefault();
                using var sampler = args.Contains("--allocations") ? new AllocationSampler() : null;
                foreach (var (name, path) in new[] { ("bare", "bench/fixed"), ("worker pool only", "bench/pool"), ("raw lane (floor)", "bench/raw"), ("LocalPolicyExecutor", "bench/executor"), ("execute_policy route", "executor/local/execute_policy") })
                {
                    if (only is not null && !path.Contains(only, StringComparison.Ordinal)) continue;
                    var pool = app.Services.GetRequiredService<PythonWorkerPool>();
                    await MeasureAsync(http, path, body, clients, warmup);
                    var (trips, batches) = (pool.RoundTrips, pool.Batches);
                    sampler?.Start();
                    var t = await MeasureAsync(http, path, body, clients, seconds);
                    if (pool.Batches > batches) Console.WriteLine($"    worker requests per batch: {(double)(pool.RoundTrips - trips) / (pool.Batches - batches):F1}");
                    Console.WriteLine($"  {name,-22} {t.PerSecond,8:F0} req/s  p50 {t.P50Ms,6:F2} ms  CPU/request: app {t.AppCpuUsPerRequest,4:F0} µs, app+workers {t.OursCpuUsPerRequest,4:F0} µs, machine {t.MachineCpuUsPerRequest,4:F0} µs; {t.SwitchesPerRequest:F1} context switches; {t.AllocatedBytesPerRequest:F0} B allocated");
                    sampler?.Report(t.Requests);
                }
                await app.StopAsync();
                await app.DisposeAsync();
                return 0;
            }
            // Steady state, not start-up: both paths run until the JIT has settled (tiering under load
            // takes seconds), then alternate so drift in the machine's load hits both alike.
            var settled = await WarmUpAsync(http, ["executor/local/execute_policy", "bench/fixed"], body, clients, warmup);
            List<Throughput> executes = [], bares = [];
            var workerPool = app.Services.GetRequiredService<PythonWorkerPool>();
            long executeTrips = 0, executeBatches = 0;
            for (var round = 0; round < rounds; round++)
            {
                var (tripsBefore, batchesBefore) = (workerPool.RoundTrips, workerPool.Batches);
                executes.Add(await MeasureAsync(http, "executor/local/execute_policy", body, clients, seconds / rounds));
                (executeTrips, executeBatches) = (executeTrips + workerPool.RoundTrips - tripsBefore, executeBatches + workerPool.Batches - batchesBefore);
                bares.Add(await MeasureAsync(http, "bench/fixed", body, clients, seconds / rounds));
            }
            var execute = Throughput.Combine(executes);
            var bare = Throughput.Combine(bares);
            var cold = await MeasureAsync(http, "bench/cold", body, clients, Math.Max(seconds, 5));
            // The same policy with 10,000 addresses in its parameters: a call's cost should not grow with them.
            var addresses = new JsonArray([.. Enumerable.Range(0, 10_000).Select(i => (JsonNode)JsonValue.Create($"10.{i / 65536 % 256}.{i / 256 % 256}.{i % 256}"))]);
            var setLarge = new JsonObject { ["$set"] = new JsonObject { ["policy_parameters.local_allowlist"] = addresses } };
            var parameterBytes = addresses.ToJsonString().Length;
            using (var put = await http.PutAsync($"policy/{uri}", new StringContent(setLarge.ToJsonString(), Encoding.UTF8, "application/json")))
                put.EnsureSuccessStatusCode();
            await MeasureAsync(http, "executor/local/execute_policy", body, clients, 1.0);
            var large = await MeasureAsync(http, "executor/local/execute_policy", body, clients, Math.Max(seconds / rounds, 2));
            await app.StopAsync();
            await app.DisposeAsync();

            Console.WriteLine();
            Console.WriteLine($"Type 2 over HTTP on loopback, {clients} concurrent clients, {Environment.ProcessorCount} CPUs; {warmup:0.#} s warm-up each, then until the JIT settled ({settled:0} s in all), then {seconds:0.#} s each in {rounds} alternating rounds");
            Console.WriteLine($"  execute_policy (warm):            {execute.PerSecond,10:F0} req/s  p50 {execute.P50Ms,7:F2} ms  p99 {execute.P99Ms,7:F2} ms  ({(double)executeTrips / Math.Max(1, executeBatches):F1} calls per worker batch)");
            Console.WriteLine($"  bare endpoint, same-size JSON:    {bare.PerSecond,10:F0} req/s  p50 {bare.P50Ms,7:F2} ms  p99 {bare.P99Ms,7:F2} ms");
            Console.WriteLine($"  cold (fetch+unpack+import/call):  {cold.PerSecond,10:F0} req/s  p50 {cold.P50Ms,7:F2} ms  p99 {cold.P99Ms,7:F2} ms");
            Console.WriteLine($"  CPU per request (µs), app / app+workers / whole machine: execute {execute.AppCpuUsPerRequest:F0} / {execute.OursCpuUsPerRequest:F0} / {execute.MachineCpuUsPerRequest:F0}, bare {bare.AppCpuUsPerRequest:F0} / {bare.OursCpuUsPerRequest:F0} / {bare.MachineCpuUsPerRequest:F0}");
            Console.WriteLine($"  bytes allocated per request in this process (server and clients): execute {execute.AllocatedBytesPerRequest:F0}, bare {bare.AllocatedBytesPerRequest:F0}");
            Console.WriteLine($"  ratio of CPU per request, bare / execute = {bare.OursCpuUsPerRequest / execute.OursCpuUsPerRequest:F2}x (what the throughput ratio tends to on a machine with no other load)");
            Console.WriteLine($"  ratio execute / bare = {execute.PerSecond / bare.PerSecond:F2}x (target >= 0.5x)");
            Console.WriteLine($"  ratio execute / cold = {execute.PerSecond / cold.PerSecond:F1}x (target >= 50x)");
            Console.WriteLine($"  execute_policy with {parameterBytes / 1024} KB of parameters: {large.PerSecond:F0} req/s, {large.PerSecond / execute.PerSecond:F2}x execute_policy above, with a few bytes of them (target: about 1x; a worker gets them once per instance)");
            return 0;
        }
        finally
        {
            try { Directory.Delete(data, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        }
    }

    // The benchmark's clients: one connection each to the started app, kept for the whole run.
    private static HttpClient ClientsOf(WebApplication app, int clients)
    {
        var address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        return new HttpClient(new SocketsHttpHandler { MaxConnectionsPerServer = clients, PooledConnectionLifetime = Timeout.InfiniteTimeSpan })
            { BaseAddress = new Uri(address + "/"), Timeout = TimeSpan.FromMinutes(2) };
    }

    /// <summary>
    /// <c>--inproc</c>: what Type 2 could serve with no worker process at all, for the team's choice on the 0.5x target.
    /// The same app shape (Kestrel, the same request body and answer size) with ip_allowlist evaluated inside the server's
    /// own process by the Type 1 SDK's embedded CPython (one call at a time, as the SDK runs them), against the bare
    /// endpoint, alternating. No executor checks, context or decision log: add those (~20-30 µs of CPU per call measured
    /// on the pool path) to read it as a whole execute_policy. No policy runs on the app's worker pool here (an embedded
    /// interpreter measured slower once a pool had run calls in the same process, docs/sdk.md).
    /// </summary>
    private static async Task<int> InProcessFloorAsync(string[] args, double seconds, double warmup, int rounds, int clients)
    {
        var (_, library) = Type1.Type1Benchmark.InterpreterPair(args);
        var sample = Path.Combine(RepoRoot(), "samples", "policies", "ip_allowlist");
        var manifest = JsonNode.Parse(await File.ReadAllTextAsync(Path.Combine(sample, "manifest.json")))!.AsObject();
        var policy = PolicyGrid.Sdk.Evaluation.InProcessPolicy.Load(library, "ip_allowlist:bench", new PolicyGrid.Runtime.Bundles.BundleDirectory(new string('0', 64), sample, null),
            manifest["policy_settings"] as JsonObject ?? [], manifest["policy_parameters"] as JsonObject ?? [],
            PolicyGrid.Sdk.Evaluation.LocalPolicyEvaluatorOptions.DefaultMaxJournalEntries, Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance);
        byte[] fixedAnswer = [];
        // The same app as the other figures (its request pipeline is part of what bare costs); nothing here uses its pool.
        var data = Directory.CreateTempSubdirectory("pg-bench-type2-inproc-").FullName;
        var app = PolicyGridApp.Build(["--urls", "http://127.0.0.1:0", "--data", data, "--Logging:LogLevel:Default=Warning", "--Logging:LogLevel:policygrid=Warning"]);
        app.MapPost("/bench/fixed", () => Results.Bytes(fixedAnswer, "application/json; charset=utf-8"));
        app.MapPost("/bench/inproc", async (HttpContext h) =>
        {
            var input = (await JsonNode.ParseAsync(h.Request.Body))!.AsObject();
            return Results.Json(new JsonObject { ["success"] = true, ["data"] = policy.Eval(input["input_data"], null) });
        });
        await app.StartAsync();
        using var http = ClientsOf(app, clients);
        var body = Encoding.UTF8.GetBytes(new JsonObject { ["policy_rule_uri"] = "ip_allowlist:bench", ["input_data"] = new JsonObject { ["ip"] = "10.0.0.1" } }.ToJsonString());
        fixedAnswer = await PostAsync(http, "bench/inproc", body);
        Console.WriteLine($"in-process answer ({fixedAnswer.Length} bytes): {Encoding.UTF8.GetString(fixedAnswer)}");
        var settled = await WarmUpAsync(http, ["bench/inproc", "bench/fixed"], body, clients, warmup);
        List<Throughput> inprocs = [], bares = [];
        for (var round = 0; round < rounds; round++)
        {
            inprocs.Add(await MeasureAsync(http, "bench/inproc", body, clients, seconds / rounds));
            bares.Add(await MeasureAsync(http, "bench/fixed", body, clients, seconds / rounds));
        }
        await app.StopAsync();
        await app.DisposeAsync();
        try { Directory.Delete(data, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        var (inproc, bare) = (Throughput.Combine(inprocs), Throughput.Combine(bares));
        Console.WriteLine();
        Console.WriteLine($"Policy evaluated in the server's own process over HTTP, {clients} clients, {Environment.ProcessorCount} CPUs ({settled:0} s warm-up, then {seconds:0.#} s each in {rounds} alternating rounds)");
        Console.WriteLine($"  in-process eval:  {inproc.PerSecond,10:F0} req/s  p50 {inproc.P50Ms,6:F2} ms  CPU {inproc.OursCpuUsPerRequest:F0} µs/request");
        Console.WriteLine($"  bare endpoint:    {bare.PerSecond,10:F0} req/s  p50 {bare.P50Ms,6:F2} ms  CPU {bare.OursCpuUsPerRequest:F0} µs/request");
        Console.WriteLine($"  ratio in-process / bare = {inproc.PerSecond / bare.PerSecond:F2}x (CPU ratio {bare.OursCpuUsPerRequest / inproc.OursCpuUsPerRequest:F2}x); no checks, context or decision log");
        return 0;
    }

    /// <summary>
    /// One or more timed runs of one endpoint. CPU is measured three ways: this process (server and its
    /// clients), plus its Python workers (which, unlike the whole machine's figure, other load on a
    /// shared host does not inflate), and the whole machine.
    /// </summary>
    private sealed record Throughput(int Requests, double Seconds, double[] LatenciesMs, double AppCpuUs, double MachineCpuUs, double OursCpuUs, long Switches = 0, long AllocatedBytes = 0)
    {
        public double SwitchesPerRequest => (double)Switches / Requests;
        // Bytes this process allocated per request (server and its clients): unlike time, other load does not move it.
        public double AllocatedBytesPerRequest => (double)AllocatedBytes / Requests;
        public double PerSecond => Requests / Seconds;
        public double P50Ms => LatenciesMs[LatenciesMs.Length / 2];
        public double P99Ms => LatenciesMs[(int)(LatenciesMs.Length * 0.99)];
        public double AppCpuUsPerRequest => AppCpuUs / Requests;
        public double MachineCpuUsPerRequest => MachineCpuUs / Requests;
        public double OursCpuUsPerRequest => OursCpuUs / Requests;

        public static Throughput Combine(IReadOnlyList<Throughput> runs) => new(runs.Sum(r => r.Requests), runs.Sum(r => r.Seconds),
            [.. runs.SelectMany(r => r.LatenciesMs).Order()], runs.Sum(r => r.AppCpuUs), runs.Sum(r => r.MachineCpuUs), runs.Sum(r => r.OursCpuUs), runs.Sum(r => r.Switches), runs.Sum(r => r.AllocatedBytes));
    }

    /// <summary>
    /// Runs each path for <paramref name="seconds"/>, then both in turn until the JIT has settled: under full load
    /// tiered compilation takes 15-20 s to finish the execute path (measured: 1.4 s of compiler CPU between 12 and
    /// 20 s into a run, none after), and a round that overlaps it is charged for compiling, not for serving.
    /// Answers the seconds spent.
    /// </summary>
    private static async Task<double> WarmUpAsync(HttpClient http, string[] paths, byte[] body, int clients, double seconds)
    {
        var clock = Stopwatch.StartNew();
        foreach (var path in paths) await MeasureAsync(http, path, body, clients, seconds);
        for (var compiled = System.Runtime.JitInfo.GetCompilationTime(); clock.Elapsed < TimeSpan.FromSeconds(90);)
        {
            foreach (var path in paths) await MeasureAsync(http, path, body, clients, 2);
            var now = System.Runtime.JitInfo.GetCompilationTime();
            if (now - compiled < TimeSpan.FromMilliseconds(20)) break; // under 1% of a CPU for the JIT
            compiled = now;
        }
        return clock.Elapsed.TotalSeconds;
    }

    private static async Task<Throughput> MeasureAsync(HttpClient http, string path, byte[] body, int clients, double seconds)
    {
        var until = Stopwatch.GetTimestamp() + (long)(seconds * Stopwatch.Frequency);
        var latencies = new List<double>[clients];
        var clock = Stopwatch.StartNew();
        var appCpu = Process.GetCurrentProcess().TotalProcessorTime;
        var machineCpu = MachineBusy();
        var childCpu = ChildrenBusy();
        var switches = ContextSwitches();
        var allocated = GC.GetTotalAllocatedBytes(precise: true);
        await Task.WhenAll(Enumerable.Range(0, clients).Select(async i =>
        {
            var mine = latencies[i] = [];
            while (Stopwatch.GetTimestamp() < until)
            {
                var start = Stopwatch.GetTimestamp();
                await PostAsync(http, path, body);
                mine.Add(Stopwatch.GetElapsedTime(start).TotalMilliseconds);
            }
        }));
        var elapsed = clock.Elapsed.TotalSeconds;
        allocated = GC.GetTotalAllocatedBytes(precise: true) - allocated;
        var appUs = (Process.GetCurrentProcess().TotalProcessorTime - appCpu).TotalMicroseconds;
        var machineUs = (MachineBusy() - machineCpu).TotalMicroseconds;
        var oursUs = appUs + (ChildrenBusy() - childCpu).TotalMicroseconds;
        return new Throughput(latencies.Sum(l => l.Count), elapsed, [.. latencies.SelectMany(l => l).Order()], appUs, machineUs, oursUs, ContextSwitches() - switches, allocated);
    }

    // Context switches of this process's threads and its workers (each is a thread put to sleep or woken), from /proc.
    private static long ContextSwitches()
    {
        if (!Directory.Exists("/proc/self/task")) return 0;
        long total = 0;
        var self = Environment.ProcessId.ToString(System.Globalization.CultureInfo.InvariantCulture);
        var dirs = Directory.EnumerateDirectories("/proc/self/task").ToList();
        foreach (var dir in Directory.EnumerateDirectories("/proc"))
        {
            try
            {
                var stat = File.ReadAllText(Path.Combine(dir, "stat"));
                if (stat[(stat.LastIndexOf(')') + 2)..].Split(' ')[1] == self) dirs.AddRange(Directory.EnumerateDirectories(Path.Combine(dir, "task")));
            }
            catch (IOException) { }
            catch (UnauthorizedAccessException) { }
        }
        foreach (var dir in dirs)
        {
            try
            {
                foreach (var line in File.ReadLines(Path.Combine(dir, "status")))
                    if (line.StartsWith("voluntary_ctxt_switches", StringComparison.Ordinal) || line.StartsWith("nonvoluntary_ctxt_switches", StringComparison.Ordinal))
                        total += long.Parse(line[(line.IndexOf(':') + 1)..].Trim(), System.Globalization.CultureInfo.InvariantCulture);
            }
            catch (IOException) { }
        }
        return total;
    }

    // CPU time of this process's live child processes (the policy workers), from /proc/<pid>/stat.
    private static TimeSpan ChildrenBusy()
    {
        if (!Directory.Exists("/proc/self")) return TimeSpan.Zero;
        var self = Environment.ProcessId;
        long ticks = 0;
        foreach (var dir in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(dir), out _)) continue;
            try
            {
                var stat = File.ReadAllText(Path.Combine(dir, "stat"));
                var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
                if (int.Parse(fields[1], System.Globalization.CultureInfo.InvariantCulture) != self) continue; // ppid
                ticks += long.Parse(fields[11], System.Globalization.CultureInfo.InvariantCulture) + long.Parse(fields[12], System.Globalization.CultureInfo.InvariantCulture); // utime, stime
            }
            catch (IOException) { }
        }
        return TimeSpan.FromSeconds(ticks / 100.0); // USER_HZ
    }

    // Busy CPU time of the whole machine (every process: this app, its Python workers, the rest), from /proc/stat.
    private static TimeSpan MachineBusy()
    {
        if (!File.Exists("/proc/stat")) return TimeSpan.Zero;
        var cpu = File.ReadLines("/proc/stat").First().Split(' ', StringSplitOptions.RemoveEmptyEntries).Skip(1).Select(long.Parse).ToArray();
        var busy = cpu.Sum() - cpu[3] - cpu[4]; // all but idle and iowait
        return TimeSpan.FromSeconds(busy / 100.0); // USER_HZ
    }

    private static async Task<byte[]> PostAsync(HttpClient http, string path, byte[] body)
    {
        using var content = new ByteArrayContent(body);
        content.Headers.ContentType = new MediaTypeHeaderValue("application/json");
        using var response = await http.PostAsync(path, content);
        var bytes = await response.Content.ReadAsByteArrayAsync();
        if (response.StatusCode != HttpStatusCode.OK) throw new InvalidOperationException($"{path} answered {(int)response.StatusCode}: {Encoding.UTF8.GetString(bytes)}");
        return bytes;
    }

    private static async Task<string> OnboardSampleAsync(HttpClient http)
    {
        var sample = Path.Combine(RepoRoot(), "samples", "policies", "ip_allowlist");
        var client = new RegistryClient(http, null);
        var upload = new ByteArrayContent(BundleZipper.Zip(sample));
        upload.Headers.ContentType = new MediaTypeHeaderValue("application/zip");
        var bundle = await client.UploadAsync("bundles", upload, CancellationToken.None);
        var manifest = JsonNode.Parse(await File.ReadAllTextAsync(Path.Combine(sample, "manifest.json")))!.AsObject();
        manifest["code"] = bundle.Data!["code"]!.GetValue<string>();
        var created = await client.PostAsync("policy", manifest, CancellationToken.None);
        return created.Data!["policy_rule_uri"]!.GetValue<string>();
    }

    /// <summary>
    /// The baseline of a registry with no bundle cache and no resident workers, paid on every call:
    /// fetch the archive over HTTP (GET /bundles/sha256/...), unpack it into a fresh directory, start
    /// a Python interpreter that imports function.py, builds the policy and calls eval once.
    /// </summary>
    private static async Task<IResult> ColdEvalAsync(HttpContext http, IDocumentStore store)
    {
        var request = (await JsonNode.ParseAsync(http.Request.Body))!.AsObject();
        var uri = request["policy_rule_uri"]!.GetValue<string>();
        var policy = (await store.GetAsync(Collections.Policies, uri))!.Body;
        var sha = policy["code"]!.GetValue<string>()["bundle://sha256/".Length..];
        using var fetch = new HttpClient { BaseAddress = new Uri($"{http.Request.Scheme}://{http.Request.Host}/") };
        var archive = await fetch.GetByteArrayAsync($"bundles/sha256/{sha}");
        var root = Path.Combine(Path.GetTempPath(), "pg-bench-cold", Guid.NewGuid().ToString("N"));
        try
        {
            ZipFile.ExtractToDirectory(new MemoryStream(archive), root);
            var start = new ProcessStartInfo(Python) { RedirectStandardInput = true, RedirectStandardOutput = true, RedirectStandardError = true };
            foreach (var a in new[] { "-I", "-c", ColdScript, Path.Combine(root, "code") }) start.ArgumentList.Add(a);
            using var python = Process.Start(start)!;
            await python.StandardInput.WriteAsync(new JsonObject
            {
                ["rule_id"] = uri,
                ["settings"] = policy["policy_settings"]!.DeepClone(),
                ["parameters"] = policy["policy_parameters"]!.DeepClone(),
                ["input_data"] = request["input_data"]!.DeepClone(),
            }.ToJsonString());
            python.StandardInput.Close();
            var output = await python.StandardOutput.ReadToEndAsync();
            await python.WaitForExitAsync();
            if (python.ExitCode != 0) throw new InvalidOperationException(await python.StandardError.ReadToEndAsync());
            return Results.Json(new JsonObject { ["success"] = true, ["data"] = JsonNode.Parse(output) });
        }
        finally
        {
            Directory.Delete(root, recursive: true);
        }
    }

    // The interpreter the worker pool falls back to here; any python3 does for the baseline.
    private static readonly string Python = File.Exists("/usr/bin/python3") ? "/usr/bin/python3" : "python3";

    private const string ColdScript = """
        import json, sys
        sys.path.insert(0, sys.argv[1])
        import function
        call = json.load(sys.stdin)
        policy = function.AIOSv1PolicyRule(call["rule_id"], call["settings"], call["parameters"])
        print(json.dumps(policy.eval(call["parameters"], call["input_data"], {})))
        """;

    private static string RepoRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (Directory.Exists(Path.Combine(dir.FullName, "samples", "policies"))) return dir.FullName;
        throw new DirectoryNotFoundException("samples/policies not found above " + AppContext.BaseDirectory);
    }
}
