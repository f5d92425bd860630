// VitalWatch ESP32 device: publishes the seed's reading to /iot/health over MQTT with mutual TLS
// every 3 seconds.
//
// Libraries (Arduino Library Manager): PubSubClient (Nick O'Leary), ArduinoJson (v7, Benoit
// Blanchon). WiFi, WiFiClientSecure and time come with the ESP32 Arduino core.
//
// This sketch has not been compiled here (no Arduino toolchain in the build machine); see
// README.md next to it.
//
// Before flashing, on the VitalWatch host:
//   vitalwatch certs device ESP32_001
// then paste into the three constants below:
//   CA_CERT      <- data/certs/ca.crt
//   DEVICE_CERT  <- data/certs/devices/ESP32_001.crt
//   DEVICE_KEY   <- data/certs/devices/ESP32_001.key   (a secret: this device's identity)
// The certificate's CN is the device id, and VitalWatch refuses readings whose device_id
// differs from it, so DEVICE_ID below must be the id you issued the certificate for.

#include <WiFi.h>
#include <WiFiClientSecure.h>
#include <PubSubClient.h>
#include <ArduinoJson.h>
#include <time.h>

// ---- Fill these in ---------------------------------------------------------------------------
const char *WIFI_SSID = "your-ssid";
const char *WIFI_PASSWORD = "your-password";
// Host name or IP of the VitalWatch server. It must be one of the server certificate's
// names: `vitalwatch certs init --san NAME` adds one (localhost, 127.0.0.1 and the host name
// are always there).
const char *MQTT_HOST = "vitalwatch.local";
const uint16_t MQTT_PORT = 8883;
const char *MQTT_TOPIC = "/iot/health";
const char *DEVICE_ID = "ESP32_001";

// Paste data/certs/ca.crt between the markers, keeping the BEGIN/END lines.
static const char CA_CERT[] PROGMEM = R"PEM(
-----BEGIN CERTIFICATE-----
...paste ca.crt here...
-----END CERTIFICATE-----
)PEM";

// Paste data/certs/devices/ESP32_001.crt.
static const char DEVICE_CERT[] PROGMEM = R"PEM(
-----BEGIN CERTIFICATE-----
...paste the device certificate here...
-----END CERTIFICATE-----
)PEM";

// Paste data/certs/devices/ESP32_001.key (PKCS#8, "BEGIN PRIVATE KEY").
static const char DEVICE_KEY[] PROGMEM = R"PEM(
-----BEGIN PRIVATE KEY-----
...paste the device key here...
-----END PRIVATE KEY-----
)PEM";
// ----------------------------------------------------------------------------------------------

const unsigned long PUBLISH_EVERY_MS = 3000;  // the seed's 3-second interval

WiFiClientSecure tls;
PubSubClient mqtt(tls);
unsigned long lastPublish = 0;

void connectWifi() {
  WiFi.mode(WIFI_STA);
  WiFi.begin(WIFI_SSID, WIFI_PASSWORD);
  Serial.print("WiFi");
  while (WiFi.status() != WL_CONNECTED) {
    delay(500);
    Serial.print(".");
  }
  Serial.println(" connected");
}

// TLS needs the right time to check certificate validity, and readings need a timestamp.
void syncClock() {
  configTime(0, 0, "pool.ntp.org", "time.nist.gov");
  Serial.print("NTP");
  time_t now = time(nullptr);
  while (now < 1700000000) {  // any time after 2023 means the clock is set
    delay(500);
    Serial.print(".");
    now = time(nullptr);
  }
  Serial.println(" synced");
}

void connectMqtt() {
  while (!mqtt.connected()) {
    Serial.print("MQTT over TLS...");
    // The client id is free-form; VitalWatch identifies the device by its certificate.
    if (mqtt.connect(DEVICE_ID)) {
      Serial.println(" connected");
    } else {
      // rc -2 is usually TLS: wrong CA, a host name not in the server certificate, or an
      // unsynchronised clock. rc 5 is "not authorised": a revoked or foreign certificate.
      Serial.printf(" failed, rc=%d; retrying in 5 s\n", mqtt.state());
      delay(5000);
    }
  }
}

// ISO 8601 UTC with microseconds, like the seed's "2024-01-16T10:30:00.123456".
void isoTimestamp(char *out, size_t len) {
  struct timeval tv;
  gettimeofday(&tv, nullptr);
  struct tm utc;
  gmtime_r(&tv.tv_sec, &utc);
  size_t n = strftime(out, len, "%Y-%m-%dT%H:%M:%S", &utc);
  snprintf(out + n, len - n, ".%06ldZ", (long)tv.tv_usec);
}

// Replace these with real sensor reads (MAX30102 for heart rate, DS18B20 for temperature...).
float readHeartRate() { return 60.0 + random(0, 400) / 10.0; }
float readBodyTemp() { return 36.1 + random(0, 15) / 10.0; }

void publishReading() {
  char timestamp[40];
  isoTimestamp(timestamp, sizeof timestamp);
  JsonDocument doc;
  doc["device_id"] = DEVICE_ID;
  doc["timestamp"] = timestamp;
  doc["heart_rate"] = readHeartRate();
  doc["body_temp"] = readBodyTemp();
  doc["signal_strength"] = WiFi.RSSI();
  doc["battery_level"] = 85;  // replace with a real battery measurement
  char payload[256];
  size_t len = serializeJson(doc, payload, sizeof payload);
  // PubSubClient publishes with QoS 0 only: there is no PUBACK, so a reading sent while the
  // connection drops is lost. Use an MQTT client with QoS 1 where that matters.
  if (!mqtt.publish(MQTT_TOPIC, (const uint8_t *)payload, len, false)) {
    Serial.println("publish failed");
  }
}

void setup() {
  Serial.begin(115200);
  connectWifi();
  syncClock();
  tls.setCACert(CA_CERT);
  tls.setCertificate(DEVICE_CERT);
  tls.setPrivateKey(DEVICE_KEY);
  mqtt.setServer(MQTT_HOST, MQTT_PORT);
  mqtt.setBufferSize(512);
  mqtt.setKeepAlive(15);
}

void loop() {
  if (WiFi.status() != WL_CONNECTED) {
    connectWifi();
  }
  if (!mqtt.connected()) {
    connectMqtt();
  }
  mqtt.loop();
  unsigned long now = millis();
  if (now - lastPublish >= PUBLISH_EVERY_MS) {
    lastPublish = now;
    publishReading();
  }
}
