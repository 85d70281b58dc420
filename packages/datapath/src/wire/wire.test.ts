import { describe, expect, it } from "vitest";
import { Counters } from "../counters.js";
import { IccChannel } from "../icc-channel.js";
import { META_GSO_TCP4, META_PARTIAL, META_UDP } from "../offload.js";
import { ourCaps, withCaps } from "../session-description.js";
import { packetView, udp4 } from "../testing.js";
import {
  ControlFrames,
  FRAME_HEADROOM,
  Fragmenter,
  FrameBuilder,
  type FrameSink,
  readFramePacket,
  writeRtpHeader,
} from "./index.js";

/**
 * The bytes on the wire, pinned: a change that alters any frame a datapath sends fails here
 * (the format is a contract between datapaths of different versions, packages/protocol/README.md).
 */

const hex = (b: Uint8Array): string => Buffer.from(b).toString("hex");
/** 10.0.0.1 -> 10.0.0.2 UDP 40000 -> 9, payload "hi": 30 bytes. */
const PKT = udp4("10.0.0.1", "10.0.0.2", "hi");
const PKT_HEX = "4500001e00000000401166cd0a0000010a0000029c400009000a00006869";

function sink(peerOffload: boolean): FrameSink & { frames: string[] } {
  const frames: string[] = [];
  return {
    frames,
    peerOffload,
    usesRtp: false,
    maxFrame: 1320,
    counters: new Counters(),
    sendFrame(buf, end) {
      frames.push(hex(buf.subarray(FRAME_HEADROOM, end)));
    },
  };
}

describe("link wire format (bytes pinned)", () => {
  it("the test packet is what the frames below carry", () => {
    expect(hex(PKT)).toBe(PKT_HEX);
  });

  it("type 1: [01][hop limit][IP packet]...", () => {
    const s = sink(false);
    const b = new FrameBuilder(s, 16_384, 4);
    b.append(packetView(PKT));
    b.append(packetView(PKT));
    b.flush();
    expect(s.frames).toEqual([`0104${PKT_HEX}${PKT_HEX}`]);
  });

  it("type 2: [02][hop limit] then per packet [meta][csumStart u16]?[gsoSize u16]?[IP packet]", () => {
    const s = sink(true);
    const b = new FrameBuilder(s, 16_384, 3);
    b.append(packetView(PKT));
    b.append(packetView(PKT, META_PARTIAL | META_UDP, 20));
    b.append(packetView(PKT, META_PARTIAL | META_GSO_TCP4, 20, 1200));
    b.flush();
    expect(s.frames).toEqual([["0203", `00${PKT_HEX}`, `030014${PKT_HEX}`, `05001404b0${PKT_HEX}`].join("")]);
  });

  it("a frame reads back packet by packet", () => {
    const s = sink(true);
    const b = new FrameBuilder(s, 16_384, 4);
    b.append(packetView(PKT, META_PARTIAL | META_GSO_TCP4, 20, 1200));
    b.flush();
    const frame = Buffer.from(s.frames[0] as string, "hex");
    const p = packetView(new Uint8Array(0));
    expect(readFramePacket(frame, 2, p)).toBe(frame.length);
    expect([p.off, p.len, p.meta, p.csumStart, p.gsoSize]).toEqual([7, 30, 5, 20, 1200]);
  });

  it("type 3: [03][frame id u16][index u8][count u8][bytes], back to back", () => {
    const frame = Buffer.alloc(FRAME_HEADROOM + 40);
    for (let i = 0; i < 40; i++) frame[FRAME_HEADROOM + i] = i;
    const sent: string[] = [];
    const f = new Fragmenter(FRAME_HEADROOM, 20);
    const send = (buf: Buffer, start: number, end: number) => {
      sent.push(hex(buf.subarray(start + FRAME_HEADROOM, end)));
      return true;
    };
    expect(f.send(frame, FRAME_HEADROOM, frame.length, send)).toBe(true);
    expect(f.send(frame, FRAME_HEADROOM, FRAME_HEADROOM + 10, send)).toBe(true);
    expect(sent).toEqual([
      "0300000003000102030405060708090a0b0c0d0e",
      "03000001030f101112131415161718191a1b1c1d",
      "03000002031e1f2021222324252627",
      "030001000100010203040506070809",
    ]);
  });

  it("0x10 / 0x11: [10][seq u32][UTF-8 text], acknowledged by [11][seq u32]", () => {
    const sent: string[] = [];
    const ch = new IccChannel(FRAME_HEADROOM, {
      sendControl: (buf, end) => sent.push(hex(buf.subarray(FRAME_HEADROOM, end))) > 0,
      deliver: () => {},
      rttMs: () => null,
    });
    ch.send("{}");
    let got = "";
    const rx = new IccChannel(FRAME_HEADROOM, {
      sendControl: (buf, end) => sent.push(hex(buf.subarray(FRAME_HEADROOM, end))) > 0,
      deliver: (text) => {
        got = text;
      },
      rttMs: () => null,
    });
    expect(rx.onFrame(Buffer.from(sent[0] as string, "hex"))).toBe(true);
    ch.close();
    expect(got).toBe("{}");
    expect(sent).toEqual(["10000000007b7d", "1100000000"]);
  });

  it("0x12-0x16: probe, probe reply, MTU probe, MTU ack, rx ack", () => {
    const c = new ControlFrames(1320);
    const at = (b: Buffer, end = b.length) => hex(b.subarray(FRAME_HEADROOM, end));
    expect(at(c.probe(0x01020304))).toBe("1201020304");
    expect(at(c.probeReply(Buffer.from("12a1b2c3d4", "hex")) as Buffer)).toBe("13a1b2c3d4");
    expect(at(c.mtuProbe(0x0102), FRAME_HEADROOM + 8)).toBe("1401020000000000");
    const probe = Buffer.alloc(1300);
    probe.set([0x14, 0xab, 0xcd]);
    expect(at(c.mtuAck(probe) as Buffer)).toBe("15abcd0514");
    expect(at(c.rxAck(0xfffe))).toBe("16fffe");
    expect(c.probeReply(Buffer.from("12a1b2c3", "hex"))).toBeNull();
    expect(c.mtuAck(Buffer.from("1401", "hex"))).toBeNull();
  });

  it("RTP header: version 2, payload type 96, seq, clock, SSRC", () => {
    const b = Buffer.alloc(FRAME_HEADROOM);
    writeRtpHeader(b, 0, 0xbeef, 0x01020304, 0xcafe0001);
    expect(hex(b)).toBe("8060beef01020304cafe0001");
  });

  it("caps attribute after the t= line", () => {
    expect(withCaps("v=0\r\nt=0 0\r\nm=video", ourCaps(true))).toBe(
      "v=0\r\nt=0 0\r\na=x-tincan-caps:15\r\nm=video",
    );
    expect(ourCaps(false)).toBe(1);
  });
});
