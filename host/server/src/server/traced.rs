//! A connection task entered into its tracing span, except while the
//! connection hibernates.
//!
//! A span costs ~470 B in the log subscriber (its registry slot and its
//! formatted fields) for as long as it lives: more than a tenth of what a
//! hibernated connection takes. So the span is dropped while the connection
//! hibernates and waits (the task says so through its mailbox), and made
//! again, with the connection's facts as they are then, when the task asks
//! for it ([`ensure_span`]) before something that may log: a wake, a close,
//! a timer. Frames delivered to a hibernated connection (pub/sub, send-to)
//! pass without one.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tracing::Span;

use super::mailbox::{ConnectionMeta, Entry, Mailbox, SPAN_KEEP, SPAN_MAY_DROP, SPAN_WANTED};

/// What a connection's span is made from.
pub(super) trait SpanFacts {
    fn span(&self, id: u64) -> Span;
}

impl SpanFacts for ConnectionMeta {
    fn span(&self, id: u64) -> Span {
        super::upgrade::conn_span(id, &self.route, &self.module.load())
    }
}

pin_project_lite::pin_project! {
    /// `task`, polled inside the connection's span while there is one.
    pub(super) struct InConnSpan<F, M = ConnectionMeta> {
        #[pin]
        task: F,
        span: Option<Span>,
        id: u64,
        entry: Arc<Entry<M>>,
    }
}

impl<F, M> InConnSpan<F, M> {
    pub(super) fn new(task: F, span: Span, id: u64, entry: Arc<Entry<M>>) -> Self {
        InConnSpan {
            task,
            span: Some(span),
            id,
            entry,
        }
    }
}

impl<F: Future, M: SpanFacts> Future for InConnSpan<F, M> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let mut this = self.project();
        loop {
            let polled = match this.span.as_ref() {
                Some(span) => {
                    let _entered = span.enter();
                    this.task.as_mut().poll(cx)
                }
                None => this.task.as_mut().poll(cx),
            };
            if polled.is_ready() {
                return polled;
            }
            let mailbox = &this.entry.mailbox;
            match (this.span.is_some(), mailbox.span()) {
                (false, SPAN_WANTED) => {
                    // The task yielded for it: poll it again, in the span.
                    mailbox.set_span(SPAN_KEEP);
                    *this.span = Some(this.entry.meta.span(*this.id));
                    continue;
                }
                (true, SPAN_MAY_DROP) => *this.span = None,
                _ => {}
            }
            return Poll::Pending;
        }
    }
}

/// For a hibernated connection's task, before something that may log:
/// the span is kept from here on (until [`may_drop_span`]), and made again
/// if it was dropped: the task yields once to be polled in it.
pub(super) async fn ensure_span(mailbox: &Mailbox) {
    if Span::current().is_none() {
        mailbox.set_span(SPAN_WANTED);
        tokio::task::yield_now().await;
    }
    mailbox.set_span(SPAN_KEEP);
}

/// The connection hibernated and is about to wait: its span may go.
pub(super) fn may_drop_span(mailbox: &Mailbox) {
    mailbox.set_span(SPAN_MAY_DROP);
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tracing::Subscriber;
    use tracing_subscriber::layer::{Context as LayerContext, SubscriberExt};
    use tracing_subscriber::registry::LookupSpan;

    use super::*;

    /// Counts the spans that exist, and the events logged outside any.
    #[derive(Clone, Default)]
    struct Census {
        open: Arc<AtomicUsize>,
        orphans: Arc<AtomicUsize>,
    }

    impl<S: Subscriber + for<'a> LookupSpan<'a>> tracing_subscriber::Layer<S> for Census {
        fn on_new_span(
            &self,
            _: &tracing::span::Attributes<'_>,
            _: &tracing::span::Id,
            _: LayerContext<'_, S>,
        ) {
            self.open.fetch_add(1, Ordering::SeqCst);
        }
        fn on_close(&self, _: tracing::span::Id, _: LayerContext<'_, S>) {
            self.open.fetch_sub(1, Ordering::SeqCst);
        }
        fn on_event(&self, _: &tracing::Event<'_>, ctx: LayerContext<'_, S>) {
            if ctx.lookup_current().is_none() {
                self.orphans.fetch_add(1, Ordering::SeqCst);
            }
        }
    }

    struct Facts;
    impl SpanFacts for Facts {
        fn span(&self, id: u64) -> Span {
            tracing::info_span!("conn", id)
        }
    }

    /// The span goes while the task waits hibernated and comes back, for
    /// what the task logs, when it asks.
    #[tokio::test]
    async fn the_span_is_dropped_while_hibernated_and_made_again_on_demand() {
        let census = Census::default();
        let _guard =
            tracing::subscriber::set_default(tracing_subscriber::registry().with(census.clone()));
        let entry = Arc::new(Entry {
            mailbox: Arc::new(Mailbox::default()),
            meta: Facts,
        });
        let (step, mut steps) = tokio::sync::mpsc::unbounded_channel::<()>();
        let mailbox = Arc::clone(&entry.mailbox);
        let task = async move {
            tracing::info!("awake");
            may_drop_span(&mailbox);
            steps.recv().await;
            // Woken without its span: asks for it before logging.
            ensure_span(&mailbox).await;
            tracing::info!("woke");
            steps.recv().await;
        };
        let span = Facts.span(7);
        let mut task = std::pin::pin!(InConnSpan::new(task, span, 7, entry));
        let mut cx = Context::from_waker(std::task::Waker::noop());
        assert!(task.as_mut().poll(&mut cx).is_pending());
        assert_eq!(census.open.load(Ordering::SeqCst), 0, "hibernated: no span");
        step.send(()).expect("task alive");
        assert!(task.as_mut().poll(&mut cx).is_pending());
        assert_eq!(
            census.open.load(Ordering::SeqCst),
            1,
            "asked for: made again"
        );
        assert_eq!(
            census.orphans.load(Ordering::SeqCst),
            0,
            "every line in a span"
        );
        step.send(()).expect("task alive");
        assert!(task.as_mut().poll(&mut cx).is_ready());
    }
}
