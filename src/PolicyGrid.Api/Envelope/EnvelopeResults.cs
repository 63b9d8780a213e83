using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.HttpResults;

namespace PolicyGrid.Api.Envelope;

/// <summary>Short names for the success envelope: every success is a 200 (existing clients check for exactly 200).</summary>
public static class Answer
{
    public static Ok<Envelope<T>> Ok<T>(T data) => TypedResults.Ok(new Envelope<T>(data));
}
