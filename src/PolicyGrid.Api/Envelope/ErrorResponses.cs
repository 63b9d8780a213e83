using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http.Metadata;

namespace PolicyGrid.Api.Envelope;

/// <summary>Documents in OpenAPI which failure statuses a route group answers, each with the envelope body.</summary>
public static class ErrorResponses
{
    public static TBuilder AnswersErrors<TBuilder>(this TBuilder builder, params int[] statuses) where TBuilder : IEndpointConventionBuilder
    {
        foreach (var status in statuses)
            builder.WithMetadata(new ProducesResponseTypeMetadata(status, typeof(ErrorEnvelope), ["application/json"]));
        return builder;
    }
}
