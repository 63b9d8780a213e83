using System.Formats.Tar;
using System.IO.Compression;
using System.Text;

namespace PolicyGrid.Sdk.Tests;

/// <summary>Bundles built in memory, and the contract's ip_allowlist policy.</summary>
public static class TestBundles
{
    public const string IpAllowlist = """
        class AIOSv1PolicyRule:
            def __init__(self, rule_id, settings, parameters):
                self.rule_id = rule_id
                self.local_allowlist = list(parameters.get("local_allowlist", []))

            def eval(self, parameters, input_data, context):
                context["calls"] = context.get("calls", 0) + 1
                allowlist = set(self.local_allowlist) | set(parameters.get("local_allowlist", []))
                allowed = input_data.get("ip") in allowlist
                return {"allowed": allowed, "reason": "allowed" if allowed else "denied", "input_data": input_data,
                        "calls": context["calls"]}

            def management(self, action, data):
                if action == "update_local_allowlist":
                    self.local_allowlist = list(data.get("ips", []))
                    return {"local_allowlist": self.local_allowlist}
                if action == "get_state":
                    return {"local_allowlist": self.local_allowlist}
                raise ValueError(f"unknown action {action}")
        """;

    public static byte[] Zip(params (string Name, string Text)[] files)
    {
        using var buffer = new MemoryStream();
        using (var zip = new ZipArchive(buffer, ZipArchiveMode.Create, leaveOpen: true))
        {
            foreach (var (name, text) in files)
            {
                using var stream = zip.CreateEntry(name).Open();
                stream.Write(Encoding.UTF8.GetBytes(text));
            }
        }
        return buffer.ToArray();
    }

    public static byte[] TarGz(IEnumerable<TarEntry> entries)
    {
        using var buffer = new MemoryStream();
        using (var gzip = new GZipStream(buffer, CompressionLevel.Fastest, leaveOpen: true))
        using (var tar = new TarWriter(gzip, TarEntryFormat.Pax, leaveOpen: true))
        {
            foreach (var entry in entries) tar.WriteEntry(entry);
        }
        return buffer.ToArray();
    }

    public static PaxTarEntry File(string name, string text) =>
        new(TarEntryType.RegularFile, name) { DataStream = new MemoryStream(Encoding.UTF8.GetBytes(text)) };

    public static byte[] AllowlistZip() => Zip(("code/function.py", IpAllowlist));
}
