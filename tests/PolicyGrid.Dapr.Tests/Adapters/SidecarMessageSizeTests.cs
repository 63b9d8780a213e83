using System.Buffers.Binary;
using System.Net;
using System.Security.Cryptography;
using Dapr.Client;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using PolicyGrid.Dapr.Bundles;
using Shouldly;

namespace PolicyGrid.Dapr.Tests.Adapters;

/// <summary>
/// The apps' DaprClient, as AddDaprAdapters composes it, against a sidecar that answers over real gRPC: a bundle comes
/// back from the bucket binding as one message, and the SDK's channel refused any over 4 MB, so every bundle larger
/// than that could be stored in the Dapr shape but never read back (Limits:MaxBundleBytes is 64 MiB).
/// </summary>
public sealed class SidecarMessageSizeTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task A_bundle_larger_than_grpcs_default_4_MB_is_read_back_through_the_binding()
    {
        var archive = RandomNumberGenerator.GetBytes(6 * 1024 * 1024);
        await using var sidecar = await BindingSidecar.StartAsync(archive, Ct);
        var services = new ServiceCollection();
        var configuration = new ConfigurationBuilder()
            .AddInMemoryCollection(new Dictionary<string, string?> { ["DAPR_GRPC_ENDPOINT"] = sidecar.Address }).Build();
        services.AddSingleton<IConfiguration>(configuration);
        services.AddDaprAdapters(configuration);
        await using var provider = services.BuildServiceProvider();

        var read = await new DaprBindingBundleStore(provider.GetRequiredService<DaprClient>())
            .GetAsync(Convert.ToHexStringLower(SHA256.HashData(archive)), Ct);

        read.ShouldBe(archive);
    }

    /// <summary>Answers InvokeBinding with the given bytes as InvokeBindingResponse.data, framed as gRPC over h2c.</summary>
    private sealed class BindingSidecar(WebApplication app, string address) : IAsyncDisposable
    {
        public string Address => address;

        public static async Task<BindingSidecar> StartAsync(byte[] data, CancellationToken ct)
        {
            var builder = WebApplication.CreateSlimBuilder();
            builder.WebHost.ConfigureKestrel(k =>
            {
                k.Listen(IPAddress.Loopback, 0, o => o.Protocols = HttpProtocols.Http2);
                k.Limits.MaxRequestBodySize = null;
            });
            var app = builder.Build();
            app.MapPost("/dapr.proto.runtime.v1.Dapr/InvokeBinding", async context =>
            {
                await context.Request.Body.CopyToAsync(Stream.Null, context.RequestAborted);
                // message InvokeBindingResponse { bytes data = 1; }: tag 0x0A, varint length, bytes.
                var message = new List<byte> { 0x0A };
                for (var n = (uint)data.Length; ; n >>= 7)
                {
                    if (n < 0x80) { message.Add((byte)n); break; }
                    message.Add((byte)(n & 0x7F | 0x80));
                }
                message.AddRange(data);
                var frame = new byte[5 + message.Count];
                BinaryPrimitives.WriteUInt32BigEndian(frame.AsSpan(1), (uint)message.Count);
                message.CopyTo(frame, 5);
                context.Response.ContentType = "application/grpc";
                await context.Response.Body.WriteAsync(frame, context.RequestAborted);
                context.Response.AppendTrailer("grpc-status", "0");
            });
            await app.StartAsync(ct);
            var bound = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
            return new BindingSidecar(app, bound.Replace("[::]", "127.0.0.1", StringComparison.Ordinal));
        }

        public async ValueTask DisposeAsync() => await app.DisposeAsync();
    }
}
