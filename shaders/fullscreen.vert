#version 330 core

// fullscreen.vert draws one triangle that covers the whole viewport. It needs
// no vertex buffers: the corners are derived from gl_VertexID (0, 1, 2 give
// clip-space (-1,-1), (3,-1), (-1,3)). All the work happens per fragment.
void main() {
    vec2 p = vec2(float((gl_VertexID << 1) & 2), float(gl_VertexID & 2));
    gl_Position = vec4(p * 2.0 - 1.0, 0.0, 1.0);
}
