using System.Diagnostics.Tracing;

namespace PolicyGrid.Bench.Type2;

/// <summary>
/// Which types this process allocates most, from the runtime's own allocation samples (one event per
/// ~100 KB allocated, naming the type of the object that crossed the mark): a profile that other load on
/// the machine cannot distort. Used by <c>type2 --breakdown --allocations</c>.
/// </summary>
internal sealed class AllocationSampler : EventListener
{
    private const EventKeywords GcKeyword = (EventKeywords)0x1;
    private readonly Dictionary<string, long> bytesByType = [];
    private bool enabled;

    protected override void OnEventSourceCreated(EventSource source)
    {
        if (source.Name == "Microsoft-Windows-DotNETRuntime") EnableEvents(source, EventLevel.Verbose, GcKeyword);
    }

    protected override void OnEventWritten(EventWrittenEventArgs e)
    {
        if (!Volatile.Read(ref enabled) || e.EventName is null || !e.EventName.StartsWith("GCAllocationTick", StringComparison.Ordinal) || e.Payload is null) return;
        var type = e.PayloadNames!.IndexOf("TypeName") is var t and >= 0 ? e.Payload[t] as string ?? "?" : "?";
        var amount = e.PayloadNames!.IndexOf("AllocationAmount64") is var a and >= 0 ? Convert.ToInt64(e.Payload[a], System.Globalization.CultureInfo.InvariantCulture) : 100_000;
        lock (bytesByType) bytesByType[type] = bytesByType.GetValueOrDefault(type) + amount;
    }

    public void Start()
    {
        lock (bytesByType) bytesByType.Clear();
        Volatile.Write(ref enabled, true);
    }

    /// <summary>Stops sampling and prints the types with the largest share of what was allocated.</summary>
    public void Report(int requests, int top = 25)
    {
        Volatile.Write(ref enabled, false);
        KeyValuePair<string, long>[] rows;
        lock (bytesByType) rows = [.. bytesByType.OrderByDescending(r => r.Value).Take(top)];
        foreach (var (type, bytes) in rows)
            Console.WriteLine($"      {(double)bytes / requests,8:F0} B/request  {type}");
    }
}
