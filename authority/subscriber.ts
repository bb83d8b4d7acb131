/**
 * One subscriber of the authority's revocation pushes (docs/design.md §3,
 * docs/protocol.md §18.7), with its own queue, so that no subscriber can
 * hold up the others.
 *
 * A revocation list is complete (each names every revocation), so only
 * the newest one matters: the queue holds one list, and a newer one
 * replaces an older one not yet sent. Memory per subscriber is therefore
 * one list, whatever happens. A push that has not been written within
 * `timeoutMs` (the subscriber stopped reading and its socket is full)
 * closes that subscriber's channel: it resubscribes when it reads again,
 * and gets the current list then.
 *
 * @module
 */
import type { SecureChannel } from "../src/channel/secure_channel.ts";
import type { Logger } from "../src/log.ts";
import type { Node } from "../src/routing/node.ts";
import type { Address, Route } from "../src/routing/routed_message.ts";

/** Options of {@link Subscriber}. */
export interface SubscriberOptions {
  node: Node;
  /** The subscriber's channel: closed when it falls behind. */
  channel: SecureChannel;
  /** The reply route of its subscribe request. */
  route: Route;
  /** The worker the pushes come from (the authority's API address). */
  from: Address;
  /** How long a push may take to be written, ms. */
  timeoutMs: number;
  /** Closes the subscriber's transport connection (its stuck writes go with it). */
  drop: () => void;
  logger: Logger;
}

/** A subscriber and its one-list queue. */
export class Subscriber {
  #o: SubscriberOptions;
  #pending: Uint8Array | null = null;
  #sending = false;

  constructor(options: SubscriberOptions) {
    this.#o = options;
  }

  /** The subscriber's channel. */
  get channel(): SecureChannel {
    return this.#o.channel;
  }

  /** Queues `push` (an encoded push message), replacing one not yet sent. Never waits. */
  push(push: Uint8Array): void {
    if (this.#o.channel.isClosed) return;
    this.#pending = push;
    if (!this.#sending) this.#drain();
  }

  async #drain(): Promise<void> {
    this.#sending = true;
    try {
      while (this.#pending !== null && !this.#o.channel.isClosed) {
        const payload = this.#pending;
        this.#pending = null;
        let timer: ReturnType<typeof setTimeout> | undefined;
        const late = new Promise<"late">((resolve) => {
          timer = setTimeout(() => resolve("late"), this.#o.timeoutMs);
        });
        const sent = this.#o.node.route({ onward: this.#o.route, return: [this.#o.from], payload })
          .catch(() => false);
        const outcome = await Promise.race([sent, late]);
        clearTimeout(timer);
        if (outcome === "late") {
          this.#o.logger.warn("revocation subscriber too slow; closing its channel", {
            member: this.#o.channel.peer.identifier,
          });
          // Not awaited: its close record would wait behind the stuck push.
          this.#o.channel.close("too slow for revocation pushes");
          this.#o.drop();
          return;
        }
      }
    } finally {
      this.#sending = false;
    }
  }
}
