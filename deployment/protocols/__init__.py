"""Protocol encoders and device links: loop commands as OCPP, SunSpec Modbus, CTA-2045 and OpenADR messages."""
