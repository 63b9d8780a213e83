using Microsoft.AspNetCore.Http;

namespace PolicyGrid.Api.Envelope;

/// <summary>Short names for the success envelope: every success is a 200 (existing clients check for exactly 200).</summary>
public static class Answer
{
    public static EnvelopeOk<T> Ok<T>(T data) => new(new Envelope<T>(data));

    /// <summary>A success with <c>warnings</c> beside <c>data</c> when there are any (none: the plain envelope).</summary>
    public static EnvelopeOk<T> Ok<T>(T data, IReadOnlyList<string> warnings) =>
        new(new Envelope<T>(data) { Warnings = warnings.Count > 0 ? warnings : null });
}
