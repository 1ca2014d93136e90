//! A librdkafka queue handle that wakes its reader when the queue turns non-empty, for the
//! readers that do not poll librdkafka in a loop: the record loop's queue
//! ([`crate::source::RecordQueue`]) and the dead-letter producer's delivery reports.

use std::ffi::c_void;
use std::ptr::NonNull;
use std::sync::OnceLock;
use std::thread::Thread;

use rdkafka::bindings as rdsys;
use tokio::sync::Notify;

/// What librdkafka wakes. Called on one of librdkafka's threads with the queue's lock held, so
/// it must not call into librdkafka.
pub trait Wake: Send + Sync {
    /// Something arrived in a queue that was empty.
    fn wake(&self);
}

impl Wake for Notify {
    fn wake(&self) {
        self.notify_one();
    }
}

/// A thread, once it is known, parked while it has nothing to serve.
impl Wake for OnceLock<Thread> {
    fn wake(&self) {
        if let Some(thread) = self.get() {
            thread.unpark();
        }
    }
}

/// Owns a librdkafka queue handle and has librdkafka wake `W` whenever the queue turns
/// non-empty. Dropping it removes the wake-up and destroys the handle; it must be dropped
/// before the client the queue belongs to.
pub struct WakingQueue<W: Wake> {
    queue: NonNull<rdsys::rd_kafka_queue_t>,
    /// librdkafka holds its address, which the box keeps in place.
    waker: Box<W>,
}

// SAFETY: librdkafka queues may be used and destroyed from any thread (every operation takes
// the queue's lock); the waker is `Send + Sync`.
unsafe impl<W: Wake> Send for WakingQueue<W> {}
// SAFETY: as for `Send`; a shared reference only reaches thread-safe librdkafka calls and the
// waker.
unsafe impl<W: Wake> Sync for WakingQueue<W> {}

/// Called by librdkafka (on one of its threads, under the queue's lock) when the queue turns
/// non-empty.
unsafe extern "C" fn wake<W: Wake>(_client: *mut rdsys::rd_kafka_t, waker: *mut c_void) {
    // SAFETY: `waker` is the boxed `W` given in `WakingQueue::new`; it is freed only after the
    // callback is removed, which waits for the queue's lock.
    let waker = unsafe { &*(waker as *const W) };
    waker.wake();
}

impl<W: Wake> WakingQueue<W> {
    /// Takes over `queue` and has librdkafka wake `waker` when it turns non-empty.
    ///
    /// # Safety
    /// `queue` is a live handle of the caller's own (from `rd_kafka_queue_new` or
    /// `rd_kafka_queue_get_main`), destroyed by nothing else, and its client outlives the
    /// returned value.
    pub unsafe fn new(queue: NonNull<rdsys::rd_kafka_queue_t>, waker: W) -> Self {
        let waker = Box::new(waker);
        // SAFETY: `queue` is valid (the caller's promise); the boxed waker stays where it is
        // until `drop` has removed the callback.
        unsafe {
            rdsys::rd_kafka_queue_cb_event_enable(
                queue.as_ptr(),
                Some(wake::<W>),
                std::ptr::from_ref::<W>(&waker).cast_mut().cast(),
            );
        }
        Self { queue, waker }
    }

    /// The handle, for librdkafka calls on the queue; valid while `self` is.
    pub fn as_ptr(&self) -> *mut rdsys::rd_kafka_queue_t {
        self.queue.as_ptr()
    }

    /// What librdkafka wakes.
    pub fn waker(&self) -> &W {
        &self.waker
    }

    /// How many events (messages, errors, reports) wait in the queue.
    pub fn len(&self) -> usize {
        // SAFETY: the handle is valid while `self` is.
        unsafe { rdsys::rd_kafka_queue_length(self.queue.as_ptr()) }
    }

    /// Whether nothing waits in the queue.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<W: Wake> Drop for WakingQueue<W> {
    fn drop(&mut self) {
        // SAFETY: removing the callback takes the queue's lock, which librdkafka holds while it
        // calls `wake`, so no call is running or can start once it returns, and the waker may
        // be freed after this. The handle is ours and destroyed once, here; destroying it
        // releases what is still in the queue while the client is alive (the new's promise).
        unsafe {
            rdsys::rd_kafka_queue_cb_event_enable(self.queue.as_ptr(), None, std::ptr::null_mut());
            rdsys::rd_kafka_queue_destroy(self.queue.as_ptr());
        }
    }
}
