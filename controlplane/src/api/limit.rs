//! The client API's request size limit, answered like every other bad input.
//!
//! tonic refuses a message above its decoding limit with `OUT_OF_RANGE` once it has
//! read the message. Clients of this API are promised `INVALID_ARGUMENT` with a
//! `google.rpc.BadRequest` naming the field for every bad input, so this layer reads
//! the 5-byte gRPC frame header of a `ControlPlane` request's first message and
//! refuses a declared length above [`MAX_REQUEST_BYTES`] before anything else is read
//! or any handler runs. Fields within the limit have their own bounds in
//! `crate::validate`. Later messages of a client stream (snapshot restore chunks,
//! far smaller) keep tonic's check.
//!
//! Only `ControlPlane` methods are peeked: the client sends their first message
//! without waiting for response headers. A bidirectional stream whose client waited
//! would stall behind the peek.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use http::{HeaderMap, Request, Response};
use http_body::Frame;
use http_body_util::BodyExt;
use tonic::Status;
use tonic::body::Body;
use tonic_types::{ErrorDetails, StatusExt};

use super::MAX_REQUEST_BYTES;

/// Path prefix of the methods this layer checks.
const CONTROL_PLANE_PATH: &str = "/constellation.v1.ControlPlane/";

/// A gRPC message frame header: a compression flag and a big-endian length.
const FRAME_HEADER: usize = 5;

/// Wraps a gRPC service with the request size check.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestSizeLimitLayer;

impl<S> tower::Layer<S> for RequestSizeLimitLayer {
    type Service = RequestSizeLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestSizeLimit { inner }
    }
}

#[derive(Debug, Clone)]
pub struct RequestSizeLimit<S> {
    inner: S,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S> tower::Service<Request<Body>> for RequestSizeLimit<S>
where
    S: tower::Service<Request<Body>, Response = Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Response<Body>, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        if !request.uri().path().starts_with(CONTROL_PLANE_PATH) {
            return Box::pin(self.inner.call(request));
        }
        // The clone that was made ready is the one to call (tower's usual swap).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let peeked = match Peeked::read(body).await {
                Ok(peeked) => peeked,
                Err(status) => return Ok(status.into_http()),
            };
            if let Some(len) = peeked.declared_len()
                && len > MAX_REQUEST_BYTES
            {
                return Ok(too_large(len).into_http());
            }
            inner
                .call(Request::from_parts(parts, Body::new(peeked)))
                .await
        })
    }
}

fn too_large(len: usize) -> Status {
    let message = format!(
        "the request message is {len} bytes; the limit is {MAX_REQUEST_BYTES} bytes \
         (snapshot restores stream in chunks)"
    );
    Status::with_error_details(
        tonic::Code::InvalidArgument,
        message.clone(),
        ErrorDetails::with_bad_request_violation("request", message),
    )
}

/// A request body whose start has been read: that start, then the rest as it comes.
struct Peeked {
    head: Bytes,
    /// Trailers met while reading the head (gRPC clients send none; kept regardless).
    trailers: Option<HeaderMap>,
    rest: Body,
}

impl Peeked {
    /// Reads until the frame header is in or the body ends.
    async fn read(mut body: Body) -> Result<Self, Status> {
        let mut head = BytesMut::new();
        let mut trailers = None;
        while head.len() < FRAME_HEADER && trailers.is_none() {
            match body.frame().await {
                None => break,
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(mut data) => head.extend_from_slice(&data.copy_to_bytes(data.remaining())),
                    Err(frame) => trailers = frame.into_trailers().ok(),
                },
                Some(Err(status)) => return Err(status),
            }
        }
        Ok(Self {
            head: head.freeze(),
            trailers,
            rest: body,
        })
    }

    /// The length the first message's frame header declares, once it is complete.
    fn declared_len(&self) -> Option<usize> {
        let header: [u8; FRAME_HEADER] = self.head.get(..FRAME_HEADER)?.try_into().ok()?;
        let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]);
        Some(len as usize)
    }
}

impl http_body::Body for Peeked {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        if !self.head.is_empty() {
            return Poll::Ready(Some(Ok(Frame::data(std::mem::take(&mut self.head)))));
        }
        if let Some(trailers) = self.trailers.take() {
            return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
        }
        Pin::new(&mut self.rest).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.head.is_empty() && self.trailers.is_none() && self.rest.is_end_stream()
    }
}
