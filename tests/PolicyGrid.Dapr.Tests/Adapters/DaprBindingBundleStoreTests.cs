using System.Security.Cryptography;
using System.Text;
using Dapr;
using Dapr.Client;
using Grpc.Core;
using NSubstitute;
using NSubstitute.ExceptionExtensions;
using PolicyGrid.Core.Errors;
using PolicyGrid.Dapr.Bundles;
using Shouldly;

namespace PolicyGrid.Dapr.Tests.Adapters;

public sealed class DaprBindingBundleStoreTests
{
    private const string Binding = DaprNames.Components.Bundles;
    private readonly DaprClient dapr = Substitute.For<DaprClient>();
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    // Not valid base64 and not UTF-8: the kind of bytes a zip holds.
    private static readonly byte[] Archive = [0x50, 0x4B, 0x03, 0x04, 0xFF, 0x00, 0x2F, 0x3D, 0x80];
    private static readonly string Sha = Convert.ToHexStringLower(SHA256.HashData(Archive));

    [Fact]
    public async Task Put_creates_a_content_addressed_object_with_the_name_for_s3_and_localstorage()
    {
        BindingRequest? sent = null;
        dapr.InvokeBindingAsync(Arg.Do<BindingRequest>(r => sent = r), Arg.Any<CancellationToken>())
            .Returns(c => new BindingResponse(c.Arg<BindingRequest>(), ReadOnlyMemory<byte>.Empty, new Dictionary<string, string>()));

        var stored = await new DaprBindingBundleStore(dapr).PutAsync(Archive, Ct);

        stored.Sha256.ShouldBe(Sha);
        stored.Size.ShouldBe(Archive.Length);
        stored.Code.ShouldBe("bundle://sha256/" + Sha);
        sent!.BindingName.ShouldBe(Binding);
        sent.Operation.ShouldBe("create");
        sent.Metadata["key"].ShouldBe("sha256/" + Sha);
        sent.Metadata["fileName"].ShouldBe("sha256/" + Sha);
        sent.Metadata["decodeBase64"].ShouldBe("true");
        Convert.FromBase64String(Encoding.ASCII.GetString(sent.Data.Span)).ShouldBe(Archive);
    }

    [Fact]
    public async Task Get_reads_the_object_and_verifies_its_hash()
    {
        dapr.InvokeBindingAsync(Arg.Is<BindingRequest>(r => r.Operation == "get" && r.Metadata["key"] == "sha256/" + Sha), Arg.Any<CancellationToken>())
            .Returns(c => new BindingResponse(c.Arg<BindingRequest>(), Archive, new Dictionary<string, string>()));

        (await new DaprBindingBundleStore(dapr).GetAsync(Sha.ToUpperInvariant(), Ct)).ShouldBe(Archive);
    }

    [Fact]
    public async Task A_replaced_object_is_refused_as_a_502()
    {
        dapr.InvokeBindingAsync(Arg.Any<BindingRequest>(), Arg.Any<CancellationToken>())
            .Returns(c => new BindingResponse(c.Arg<BindingRequest>(), new byte[] { 1, 2, 3 }, new Dictionary<string, string>()));

        var e = await Should.ThrowAsync<PolicyGridException>(() => new DaprBindingBundleStore(dapr).GetAsync(Sha, Ct));

        e.Status.ShouldBe(502);
        e.Message.ShouldContain("corrupt");
    }

    [Theory]
    [InlineData("api error NoSuchKey: The specified key does not exist.")]
    [InlineData("open /tmp/policygrid/bundles/sha256/ab: no such file or directory")]
    public async Task A_missing_object_reads_as_no_bundle(string bindingError)
    {
        dapr.InvokeBindingAsync(Arg.Any<BindingRequest>(), Arg.Any<CancellationToken>())
            .ThrowsAsync(new DaprException("Binding operation failed", new RpcException(new Status(StatusCode.Internal, "error invoking output binding policygrid-bundles: " + bindingError))));

        (await new DaprBindingBundleStore(dapr).GetAsync(Sha, Ct)).ShouldBeNull();
    }

    [Fact]
    public async Task An_unreachable_bucket_is_a_503_not_a_missing_bundle()
    {
        dapr.InvokeBindingAsync(Arg.Any<BindingRequest>(), Arg.Any<CancellationToken>())
            .ThrowsAsync(new DaprException("Binding operation failed", new RpcException(new Status(StatusCode.Unavailable, "connect: connection refused"))));

        var e = await Should.ThrowAsync<PolicyGridException>(() => new DaprBindingBundleStore(dapr).GetAsync(Sha, Ct));
        e.Status.ShouldBe(503);
    }

    [Theory]
    [InlineData("abc")]
    [InlineData("../../etc/passwd")]
    public async Task A_malformed_hash_is_a_400_and_reaches_no_binding(string sha)
    {
        var e = await Should.ThrowAsync<PolicyGridException>(() => new DaprBindingBundleStore(dapr).GetAsync(sha, Ct));
        e.Status.ShouldBe(400);
        await dapr.DidNotReceiveWithAnyArgs().InvokeBindingAsync(default(BindingRequest)!, default);
    }
}
