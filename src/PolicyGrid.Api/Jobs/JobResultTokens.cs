using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;
using PolicyGrid.Core.Ports;

namespace PolicyGrid.Api.Jobs;

/// <summary>
/// The per-job secret a remote runner presents when it posts its result. Only its SHA-256 is
/// stored (so a store reader cannot forge results), and it is compared in constant time.
/// </summary>
public sealed class JobResultTokens(IDocumentStore store)
{
    public const string Collection = "job_result_tokens";

    public async Task<string> IssueAsync(string jobId, CancellationToken ct)
    {
        var token = Convert.ToBase64String(RandomNumberGenerator.GetBytes(32)).TrimEnd('=').Replace('+', '-').Replace('/', '_');
        await store.UpsertAsync(Collection, jobId, new JsonObject { ["sha256"] = Hash(token) }, ct);
        return token;
    }

    public async Task<bool> VerifyAsync(string jobId, string presented, CancellationToken ct)
    {
        var stored = await store.GetAsync(Collection, jobId, ct);
        var expected = stored?.Body["sha256"]?.GetValue<string>() ?? "";
        // Hash even when no token exists, so the answer takes as long either way.
        var ok = CryptographicOperations.FixedTimeEquals(Encoding.ASCII.GetBytes(Hash(presented)), Encoding.ASCII.GetBytes(expected.PadRight(64)));
        return ok && expected.Length > 0;
    }

    public Task ForgetAsync(string jobId, CancellationToken ct) => store.DeleteAsync(Collection, jobId, null, ct);

    private static string Hash(string token) => Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(token)));
}
