using System.Security.Cryptography;
using System.Text;

namespace PolicyGrid.Kubernetes;

/// <summary>
/// Kubernetes object names derived from PolicyGrid ids. Executor ids may hold characters a DNS-1035
/// label may not (underscores, capitals, dots); those are folded to '-' and a short hash of the
/// original id is appended so that two ids never fold to the same name.
/// </summary>
public static class KubernetesNames
{
    public const string ManagedBy = "policygrid";

    public static string JobName(string jobId) => Label("pg-job-", jobId);

    public static string ExecutorNode(string executorId) => Label("pg-executor-", executorId);

    private static string Label(string prefix, string id)
    {
        var slug = new StringBuilder(id.Length);
        foreach (var c in id.ToLowerInvariant())
            slug.Append(c is >= 'a' and <= 'z' or >= '0' and <= '9' ? c : '-');
        var folded = slug.ToString().Trim('-');
        var exact = folded == id;
        const int max = 63;
        var room = max - prefix.Length - (exact ? 0 : 9);
        if (folded.Length > room) { folded = folded[..room].TrimEnd('-'); exact = false; room -= 0; }
        if (exact) return prefix + folded;
        var hash = Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(id)))[..8];
        if (prefix.Length + folded.Length + 9 > max) folded = folded[..(max - prefix.Length - 9)].TrimEnd('-');
        return folded.Length == 0 ? prefix + hash : $"{prefix}{folded}-{hash}";
    }
}
