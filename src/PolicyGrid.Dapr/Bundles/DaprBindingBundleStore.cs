using System.Security.Cryptography;
using Dapr.Client;
using PolicyGrid.Core.Errors;
using PolicyGrid.Core.Ports;

namespace PolicyGrid.Dapr.Bundles;

/// <summary>
/// <see cref="IBundleStore"/> over the output binding <see cref="DaprNames.Components.Bundles"/>:
/// bindings.aws.s3 (S3 or Ceph RGW) in production, bindings.localstorage for development.
/// Objects are content-addressed like the embedded store: <c>sha256/{hex}</c>, so writing the same
/// archive twice is harmless and a read can be verified against its own name.
/// <para>
/// Operations: <c>create</c> with the object name in metadata, <c>get</c> to read it back. The name is
/// sent under both <c>key</c> (what bindings.aws.s3 reads) and <c>fileName</c> (what bindings.localstorage
/// reads); each binding ignores the other. The bytes travel base64-encoded with <c>decodeBase64: "true"</c>,
/// which S3 honours per request and localstorage does by itself, so binary archives arrive intact on both.
/// </para>
/// </summary>
public sealed class DaprBindingBundleStore(DaprClient dapr) : IBundleStore
{
    private const string Binding = DaprNames.Components.Bundles;
    public const string CreateOperation = "create";
    public const string GetOperation = "get";

    public static string ObjectKey(string sha256) => "sha256/" + sha256;

    public async Task<BundleRef> PutAsync(ReadOnlyMemory<byte> archive, CancellationToken ct = default)
    {
        var sha = Convert.ToHexStringLower(SHA256.HashData(archive.Span));
        var request = new BindingRequest(Binding, CreateOperation)
        {
            Data = System.Text.Encoding.ASCII.GetBytes(Convert.ToBase64String(archive.Span)),
        };
        AddObjectName(request, sha);
        request.Metadata["decodeBase64"] = "true";
        request.Metadata["contentType"] = "application/octet-stream";
        try
        {
            await dapr.InvokeBindingAsync(request, ct);
        }
        catch (Exception e) when (SidecarFailures.IsSidecarFailure(e))
        {
            throw SidecarFailures.Translate(e, $"bundle binding '{Binding}'");
        }
        return new BundleRef(sha, archive.Length);
    }

    public async Task<byte[]?> GetAsync(string sha256, CancellationToken ct = default)
    {
        if (sha256.Length != 64 || !sha256.All(Uri.IsHexDigit))
            throw Problems.BadRequest($"'{sha256}' is not a sha256 hex digest (64 hex digits)");
        sha256 = sha256.ToLowerInvariant();
        var request = new BindingRequest(Binding, GetOperation);
        AddObjectName(request, sha256);
        BindingResponse response;
        try
        {
            response = await dapr.InvokeBindingAsync(request, ct);
        }
        catch (Exception e) when (SidecarFailures.IsSidecarFailure(e) && IsMissingObject(e))
        {
            return null;
        }
        catch (Exception e) when (SidecarFailures.IsSidecarFailure(e))
        {
            throw SidecarFailures.Translate(e, $"bundle binding '{Binding}'");
        }
        var bytes = response.Data.ToArray();
        // The bucket is outside our process: a corrupted or replaced object must not run as policy code.
        var actual = Convert.ToHexStringLower(SHA256.HashData(bytes));
        if (actual != sha256)
            throw Problems.BackendError($"bundle {ObjectKey(sha256)} in binding '{Binding}' has sha256 {actual}; the stored object is corrupt or was replaced");
        return bytes;
    }

    private static void AddObjectName(BindingRequest request, string sha)
    {
        request.Metadata["key"] = ObjectKey(sha);
        request.Metadata["fileName"] = ObjectKey(sha);
    }

    /// <summary>
    /// Bindings report a missing object only as error text: S3 says NoSuchKey (or 404), localstorage
    /// "no such file or directory". Anything else is a real failure, not an absent bundle.
    /// </summary>
    public static bool IsMissingObject(Exception e)
    {
        var text = (SidecarFailures.Find<Grpc.Core.RpcException>(e)?.Status.Detail ?? "") + " " + e.Message + " " + e.InnerException?.Message;
        return text.Contains("NoSuchKey", StringComparison.OrdinalIgnoreCase)
            || text.Contains("no such file", StringComparison.OrdinalIgnoreCase)
            || text.Contains("StatusCode: 404", StringComparison.OrdinalIgnoreCase)
            || text.Contains("not found", StringComparison.OrdinalIgnoreCase);
    }
}
